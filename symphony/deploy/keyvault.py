"""``python -m symphony.deploy.keyvault``: at a VM's first boot, one Key Vault secret into a file.

The VM's managed identity asks the instance metadata service for a Key Vault token, reads the
secret, and writes it to a file readable by the service user only (mode 0600, owned by
``--owner``; on Windows the folder's ACL, set by the install script, does that). The secret is
never printed. Retries for a few minutes: at boot the identity may not be ready yet.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

IMDS = "http://169.254.169.254"
TOKEN_PATH = "/metadata/identity/oauth2/token"
VAULT_API = "7.4"


class FetchError(Exception):
    pass


def _get(url: str, headers: dict[str, str], timeout: float = 10.0) -> dict:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed schemes
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{urllib.parse.urlsplit(url).netloc} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetchError(f"{urllib.parse.urlsplit(url).netloc}: {getattr(exc, 'reason', exc)}") from None


def fetch_secret(vault: str, secret: str, *, imds: str = IMDS, vault_url: str | None = None,
                 client_id: str | None = None) -> str:
    base = (vault_url or f"https://{vault}.vault.azure.net").rstrip("/")
    query = {"api-version": "2018-02-01", "resource": "https://vault.azure.net"}
    if client_id:
        query["client_id"] = client_id
    token = _get(f"{imds.rstrip('/')}{TOKEN_PATH}?{urllib.parse.urlencode(query)}", {"Metadata": "true"})
    access = token.get("access_token")
    if not access:
        raise FetchError("the instance metadata service gave no access token (has the VM a managed identity?)")
    body = _get(f"{base}/secrets/{urllib.parse.quote(secret, safe='')}?api-version={VAULT_API}",
                {"Authorization": f"Bearer {access}"})
    value = body.get("value")
    if not isinstance(value, str) or not value:
        raise FetchError(f"Key Vault secret {secret} has no value")
    return value


def write_private(path: str, value: str, owner: str | None = None) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value.strip() + "\n")
    if owner and hasattr(os, "chown"):
        import pwd

        entry = pwd.getpwnam(owner)
        os.chown(temporary, entry.pw_uid, entry.pw_gid)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m symphony.deploy.keyvault",
                                description="Write a Key Vault secret to a file only its owner reads (VM boot).")
    p.add_argument("--vault", required=True, help="the Key Vault's name")
    p.add_argument("--secret", required=True, help="the secret's name")
    p.add_argument("--file", required=True, help="the file to write (mode 0600)")
    p.add_argument("--owner", help="the user that owns the file (Linux)")
    p.add_argument("--client-id", help="the client id of a user-assigned managed identity")
    p.add_argument("--imds", default=IMDS, help=argparse.SUPPRESS)  # tests: a fake on loopback
    p.add_argument("--vault-url", help=argparse.SUPPRESS)
    p.add_argument("--tries", type=int, default=30, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    delay = 1.0
    for attempt in range(1, args.tries + 1):
        try:
            value = fetch_secret(args.vault, args.secret, imds=args.imds, vault_url=args.vault_url,
                                 client_id=args.client_id)
            write_private(args.file, value, args.owner)
            print(f"wrote Key Vault secret {args.secret} to {args.file}")
            return 0
        except FetchError as exc:
            if attempt == args.tries:
                print(f"could not read Key Vault secret {args.secret} of {args.vault}: {exc}", file=sys.stderr)
                return 1
            print(f"Key Vault secret {args.secret}: {exc}; trying again in {delay:.0f}s", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    return 1


if __name__ == "__main__":
    sys.exit(main())
