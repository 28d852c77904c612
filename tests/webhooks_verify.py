"""Verifies webhook requests recorded by tests/tests/webhooks.rs with the Standard Webhooks
reference library (the `standardwebhooks` package from PyPI, installed by scripts/setup into
target/tools/venv), as a receiver of edgemock's webhooks would.

Usage: webhooks_verify.py SECRET REQUESTS_JSON
    REQUESTS_JSON holds [{"headers": {"name": "value", ...}, "body": "..."}, ...].

Exits 0 when every request verifies; otherwise 1, naming each request that does not and why.
"""

import json
import sys

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> int:
    secret, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        requests = json.load(f)
    if not requests:
        print("no requests to verify", file=sys.stderr)
        return 1
    webhook = Webhook(secret)
    failed = 0
    for i, request in enumerate(requests):
        try:
            payload = webhook.verify(request["body"], request["headers"])
        except (WebhookVerificationError, ValueError) as e:
            failed += 1
            print(f"request {i} ({request['headers'].get('webhook-id')}): {e}", file=sys.stderr)
            continue
        if not isinstance(payload, dict) or not {"type", "timestamp", "data"} <= payload.keys():
            failed += 1
            print(f"request {i}: the payload is not {{type, timestamp, data}}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(requests)} requests failed verification", file=sys.stderr)
        return 1
    print(f"verified {len(requests)} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
