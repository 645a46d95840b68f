"""kmod-py keygen: a module-signing key and certificate, and how to enrol it."""

from __future__ import annotations

from pathlib import Path

import typer


def keygen(
    key: Path = typer.Option(None, "--key", help="Private key file (PEM) to make or reuse."),
    cert: Path = typer.Option(None, "--cert", help="Certificate file (DER; .pem/.crt: PEM)."),
    cn: str = typer.Option(None, "--cn", help="The certificate's common name (modinfo's signer)."),
    hash_algo: str = typer.Option(
        None, "--hash", help="Hash (default: the running kernel's CONFIG_MODULE_SIG_HASH)."
    ),
    bits: int = typer.Option(2048, "--bits", help="RSA key size."),
    days: int = typer.Option(36500, "--days", help="Certificate validity."),
) -> None:
    """Make a module-signing key and certificate (codeSigning), or reuse an existing one.

    Without --key/--cert: DKMS's /var/lib/dkms/mok.key + mok.pub when present, else
    ~/.local/share/kmod-py/signing/mok.key + mok.der. Never overwrites a key.
    """
    from kbuild_py.signing import keys

    pair = keys.keygen_pair(key, cert)
    algo = hash_algo or keys.running_kernel_hash() or "sha256"
    res = keys.keygen(pair, common_name=cn, hash_algo=algo, bits=bits, days=days)
    info = res.cert
    whose = {"DKMS": " (DKMS's)", "kmod-py": "", "options": ""}.get(pair.origin, "")
    state = "created, mode 0600" if res.created_key else "exists, reused"
    typer.echo(f"key:         {pair.key}{whose}  ({state})")
    state = "created" if res.created_cert else "exists, reused"
    typer.echo(f"certificate: {pair.cert}{whose}  ({state})")
    typer.echo(f"  subject:   {info.subject}")
    typer.echo(f"  key id:    {info.key_id.hex().upper()}  (modinfo: sig_key)")
    usage = "codeSigning" if info.code_signing else "no codeSigning usage"
    typer.echo(f"  key:       {info.key}, certificate signed with {info.sig_hash}, {usage}")
    if not res.created_key and not res.created_cert and (cn or hash_algo):
        typer.echo("  (--cn/--hash apply to new certificates only: nothing was replaced)")
    typer.echo("enrol it so the kernel trusts modules signed with this key (UEFI Secure Boot):")
    for step in keys.mokutil_steps(pair.cert):
        typer.echo(f"  {step}")
    sign_opts = "" if pair.origin != "options" else f" --key {pair.key} --cert {pair.cert}"
    typer.echo(f"then: kmod-py build --sign{sign_opts}   (or kmod-py sign{sign_opts} FILE.ko)")
