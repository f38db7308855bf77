"""Host side of a quantised KV cache: storage layout, quantise / dequantise (the reference), append.

See docs/kv_cache.md. ``tilec.kv`` imports torch; ``import tilec`` loads it on first use of ``tilec.kv``.
"""

from tilec.kv.cache import QuantKVCache
from tilec.kv.layout import KV_FORMATS, bits, pack_planes, planes, unpack_planes
from tilec.kv.quant import dequantize, quantize_channels, quantize_tokens

__all__ = [
    "KV_FORMATS", "QuantKVCache", "bits", "dequantize", "pack_planes", "planes", "quantize_channels",
    "quantize_tokens", "unpack_planes",
]
