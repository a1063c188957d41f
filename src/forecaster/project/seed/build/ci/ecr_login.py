"""Print the Docker password of the ECR registry that holds an image (AWS credentials from the environment).

Usage: python ci/ecr_login.py IMAGE_URI | docker login --username AWS --password-stdin "${IMAGE_URI%%/*}"
"""

import base64
import sys

import boto3


def password(image: str) -> str:
    """Return the ECR password for the registry of ``image`` (ACCOUNT.dkr.ecr.REGION.amazonaws.com/...)."""
    host = image.split("/", 1)[0]
    account, _, _, region = host.split(".")[:4]
    ecr = boto3.client("ecr", region_name=region)
    token = ecr.get_authorization_token(registryIds=[account])["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().split(":", 1)[1]


if __name__ == "__main__":
    print(password(sys.argv[1]))
