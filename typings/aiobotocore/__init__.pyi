# The part of aiobotocore that storage.blob.s3 uses; the S3 client's own types come from
# types-aiobotocore-s3.
