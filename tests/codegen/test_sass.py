"""The SASS main-loop counter on hand-written SASS text (pure), and on one real cubin (AOT)."""

from __future__ import annotations

import pytest

from tilec.codegen.sass import loop_stats, loops, main_loop, parse_sass
from tilec.errors import BackendError

# Outer loop .L_x_0 (0x0010..0x00c0) around an inner loop .L_x_1 (0x0030..0x0090), a second, shorter
# innermost loop .L_x_2, a forward branch and the self-loop nvdisasm puts at a kernel's end.
TEXT = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   MOV R2, RZ ;
        /*0020*/              @!P1 BRA `(.L_x_3) ;
.L_x_1:
        /*0030*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0040*/                   LDGSTS.E.BYPASS.128 [R9], desc[UR4][R2.64] ;
        /*0050*/                   STS.128 [R3], R4 ;
        /*0058*/                   STS.U8 [R3+0x10], R4 ;
        /*005c*/                   STSM.16.M88.4 [R3+0x20], R4 ;
        /*0060*/                   LDSM.16.M88.4 R12, [R3] ;
        /*0070*/                   HMMA.16816.F32 R16, R12, R14, R16 ;
        /*0080*/                   STL [R1], R16 ;
        /*0090*/               @P0 BRA `(.L_x_1) ;
.L_x_3:
        /*00a0*/                   LDG.E.U8 R5, desc[UR4][R2.64] ;
        /*00b0*/                   IADD3 R2, R2, 0x1, RZ ;
        /*00c0*/               @P2 BRA `(.L_x_0) ;
.L_x_2:
        /*00d0*/                   IADD3 R2, R2, 0x1, RZ ;
        /*00e0*/               @P3 BRA `(.L_x_2) ;
.L_x_4:
        /*00f0*/                   BRA `(.L_x_4);
"""


def test_parse_finds_instructions_labels_and_predicates() -> None:
    sass = parse_sass(TEXT)
    assert len(sass.instrs) == 18
    assert sass.labels == {".L_x_0": 0x10, ".L_x_1": 0x30, ".L_x_3": 0xA0, ".L_x_2": 0xD0, ".L_x_4": 0xF0}
    branch = sass.instrs[2]
    assert (branch.predicate, branch.base, branch.target()) == ("@!P1", "BRA", ".L_x_3")
    assert sass.instrs[3].opcode == "LDG.E.128" and sass.instrs[3].target() is None


def test_main_loop_is_the_longest_innermost_backward_branch() -> None:
    sass = parse_sass(TEXT)
    assert sorted(loops(sass)) == [(1, 14), (3, 11), (15, 16)]  # the self-loop is not a loop body
    body = main_loop(sass)
    assert [i.address for i in body] == [0x30, 0x40, 0x50, 0x58, 0x5C, 0x60, 0x70, 0x80, 0x90]
    stats = loop_stats(body)
    assert stats.instructions == 9
    assert (stats.tensor_core, stats.shared_stores, stats.shared_loads, stats.local_accesses) == (1, 3, 1, 1)
    assert stats.shared_store_bytes == 16 + 1 + 16
    assert stats.global_load_bytes == 32  # two 16-byte loads
    assert stats.opcodes["BRA"] == 1


def test_no_loop_is_an_error() -> None:
    with pytest.raises(BackendError, match="no loop"):
        main_loop(parse_sass("        /*0000*/                   EXIT ;\n"))


def test_every_tensor_core_family_counts() -> None:
    """mma.sync (HMMA/IMMA), wgmma (HGMMA/IGMMA/QGMMA) and tcgen05 (UTC*MMA, sm_100; UTCIMMA is kind::i8)."""
    ops = ["HMMA.16816.F32", "IMMA.16832.S8.S8.SAT", "HGMMA.64x64x16.F32", "IGMMA.64x64x32.S8.S8",
           "QGMMA.64x64x32.F32.E4M3.E4M3", "UTCHMMA", "UTCIMMA", "UTCQMMA", "UTCOMMA"]
    text = "\n".join(f"        /*{16 * i:04x}*/ {op} R0, R1, R2, R3 ;" for i, op in enumerate(ops))
    assert loop_stats(parse_sass(text).instrs).tensor_core == len(ops)
