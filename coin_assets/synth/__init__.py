"""Deterministic synthetic coin photos for demos, tests and benchmarks (``python -m coin_assets.synth``)."""

from coin_assets.synth.photos import (  # noqa: F401
    YEAR_MAX,
    YEAR_MIN,
    SynthCoin,
    encode_photo,
    generate_uploads,
    main,
    photo_size_for,
    render_coin_face,
    render_coin_pair,
)
