"""Records every AWS API call of this Python process (botocore ``provide-client-params``) to $IAM_ORACLE_LOG."""

import json
import os

import botocore.session

_LOG = os.environ.get("IAM_ORACLE_LOG")
_init = botocore.session.Session.__init__


def _record(params=None, model=None, **_):
    service = model.service_model
    prefix = service.metadata.get("signingName") or service.endpoint_prefix
    with open(_LOG, "a") as out:
        out.write(json.dumps({"prefix": prefix, "operation": model.name, "params": params}, default=str) + "\n")


def _patched(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.register("provide-client-params", _record)


if _LOG:
    botocore.session.Session.__init__ = _patched
