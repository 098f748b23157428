"""Where values passed between steps live when steps run on different machines.

dagster-aws's `S3PickleIOManager` on the same bucket as the image layers, under its own prefix
(`COIN_ASSETS_IO_PREFIX`, default `<s3 prefix>/io`). Keys given as AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY are passed as Dagster `EnvVar`s (resolved in each process, shown by name
only in the UI); without them boto3's own chain (instance role, profile) applies.
"""

from __future__ import annotations

from dagster import EnvVar
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from coin_assets.settings import Settings


def io_manager_from_settings(settings: Settings) -> S3PickleIOManager:
    if not settings.s3_bucket:
        raise ValueError("an S3 IO manager needs COIN_ASSETS_S3_BUCKET")
    keys = ({"aws_access_key_id": EnvVar("AWS_ACCESS_KEY_ID"), "aws_secret_access_key": EnvVar("AWS_SECRET_ACCESS_KEY")}
            if settings.aws_keys_in_env else {})
    return S3PickleIOManager(
        s3_resource=S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, **keys),
        s3_bucket=settings.s3_bucket,
        s3_prefix=settings.io_key_prefix,
    )
