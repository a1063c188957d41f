"""Exit 0 when an ECR image exists, 1 when it does not (AWS credentials from the environment).

The project's repositories have immutable tags: the images step builds and pushes an image only when its tag is
new (a re-run keeps what an earlier run pushed), and the pipeline step refuses to start a pipeline on images that
were never pushed (the custom pipeline ``retrain`` on a commit that the main pipeline did not build).

Usage: python ci/image_exists.py ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG
"""

import sys

import boto3


def exists(image: str) -> bool:
    """Whether ``image`` (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG) is in its ECR repository."""
    host, _, reference = image.partition("/")
    account, _, _, region = host.split(".")[:4]
    repository, _, tag = reference.rpartition(":")
    ecr = boto3.client("ecr", region_name=region)
    try:
        ecr.describe_images(registryId=account, repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


if __name__ == "__main__":
    sys.exit(0 if exists(sys.argv[1]) else 1)
