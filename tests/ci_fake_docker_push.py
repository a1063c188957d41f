"""What ``docker push IMAGE`` leaves in ECR, for the CI tests' docker stand-in: the tag in its repository.

Usage (by the stand-in, in a CI step's shell):
python tests/ci_fake_docker_push.py ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG
"""

import json
import sys

import boto3

if __name__ == "__main__":
    host, _, reference = sys.argv[1].partition("/")
    repository, _, tag = reference.rpartition(":")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "0" * 64,
        },
        "layers": [],
    }
    ecr = boto3.client("ecr", region_name=host.split(".")[3])
    ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
