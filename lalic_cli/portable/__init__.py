"""The portable entropy path: everything that decides a CDF or a mean, computed with the
same bits on every CPU and thread count, so that ``.lal`` files decode anywhere
(``docs/portable.md``; the API and the file header call it ``"exact"``).

- ``ops``: order-independent operators (arithmetic 1's float64-grid GEMMs and
  convolutions; the shared integer-statistics LayerNorm, ``exp``/``erfc``/... from
  correctly rounded operations, chunked BiWKV);
- ``int_ops``: arithmetic 2 (format version 4): GEMMs of 15-bit integers with int32 sums
  and fused epilogues, the fixed-order OmniShift, the recurrent BiWKV;
- ``layers``: ``to_portable``, the portable counterparts of the entropy path's float
  layers, in either arithmetic (a file's format version says which);
- ``coder_tables``: CompressAI's Gaussian and bottleneck CDF tables from portable code;
- ``latent_codec``: the portable copy of a model's latent codec, coder tables included;
- ``bernoulli``: the integer Bernoulli CDF tables of MRT's binary coder;
- ``table_cache``: the on-disk cache of coder tables, keyed by the weights' fingerprint;
- ``copies``: the one in-memory cache of portable copies, forgotten when the weights are
  loaded or trained.

Submodules are imported on use: importing this package costs nothing.
"""
