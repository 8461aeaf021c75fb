#!/usr/bin/env python3
"""Checks that every workspace crate declares a rust-version (MSRV) no lower than the
rust-version declared by anything it builds on (its normal and build dependencies, all the
way down). Reads `cargo metadata`; needs no other toolchain, so it runs offline in CI. A
crate whose declared MSRV is below a dependency's would fail to build on that MSRV."""

import json
import subprocess
import sys


def version_key(v):
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def host_target():
    """The host's target triple (what CI builds for)."""
    for line in subprocess.check_output(["rustc", "-vV"], text=True).splitlines():
        if line.startswith("host: "):
            return line.split(": ", 1)[1]
    raise SystemExit("rustc -vV printed no host")


def main():
    meta = json.loads(
        subprocess.check_output(
            [
                "cargo",
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--filter-platform",
                host_target(),
            ],
            text=True,
        )
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = meta["workspace_members"]

    def deps(node_id):
        for dep in nodes[node_id]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & {None, "build"}:
                yield dep["pkg"]

    failures = []
    for member in members:
        own = packages[member].get("rust_version")
        name = packages[member]["name"]
        if not own:
            failures.append(f"{name}: declares no rust-version")
            continue
        seen, stack, highest = set(), list(deps(member)), ("0", None)
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            rv = packages[dep].get("rust_version")
            if rv and version_key(rv) > version_key(highest[0]):
                highest = (rv, packages[dep]["name"])
            stack.extend(deps(dep))
        if highest[1] and version_key(highest[0]) > version_key(own):
            failures.append(
                f"{name}: declares rust-version {own}, but {highest[1]} needs {highest[0]}"
            )
        else:
            print(f"{name}: rust-version {own} (highest below it: {highest[0]} {highest[1] or ''})")
    for failure in failures:
        print(f"MSRV: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
