#!/usr/bin/env python3
"""Checks what `make dist` built: the portable binary and the two packages.

  check_dist.py DIST_DIR [--max-glibc 2.17] [--control BINARY]

- dist/drainhook: the newest GLIBC_x.y in its ELF version needs (.gnu.version_r, read here
  from the file itself: no binutils, no network) is at most --max-glibc, and it runs
  (`--version`). --control names a binary that must FAIL the same check (the normal build,
  linked against this machine's newer glibc): the check is shown to discriminate.
- the RPM and the DEB: their file lists, the config file marked as such, the units' ExecStart
  pointing at /usr/bin/drainhook, and the scriptlets (enable the fallback; leave the agent to
  the operator; never stop the fallback at removal).
Exit 1 with the reasons on any failure.
"""

import argparse
import glob
import os
import struct
import subprocess
import sys
import tempfile

SHT_GNU_VERNEED = 0x6FFFFFFE


def version_needs(path):
    """{library: [version names]} from an ELF64 little-endian file's .gnu.version_r."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("%s is not a 64-bit little-endian ELF file" % path)
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        (sh_name, sh_type, _flags, _addr, sh_offset, sh_size, sh_link, sh_info, _align,
         _entsize) = struct.unpack_from("<IIQQQQIIQQ", data, off)
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_info))
    needs = {}
    for sh_type, off, _size, link, count in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][1]

        def name(o):
            end = data.index(b"\0", strtab + o)
            return data[strtab + o:end].decode()

        entry = off
        for _ in range(count):
            _ver, cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, entry)
            lib = name(vn_file)
            aux = entry + vn_aux
            for _ in range(cnt):
                _hash, _flags, _other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
                needs.setdefault(lib, []).append(name(vna_name))
                aux += vna_next
            entry += vn_next
    return needs


def newest_glibc(path):
    versions = []
    for names in version_needs(path).values():
        for n in names:
            if n.startswith("GLIBC_") and n[6:].replace(".", "").isdigit():
                versions.append(tuple(int(x) for x in n[6:].split(".")))
    return max(versions) if versions else None


def fmt(v):
    return ".".join(str(x) for x in v) if v else "none"


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


FILES = {"/usr/bin/drainhook", "/usr/lib/systemd/system/drainhook.service",
         "/usr/lib/systemd/system/drainhook-shutdown.service", "/etc/drainhook/drainhook.toml",
         "/usr/share/doc/drainhook/README.md"}


def check_scripts(label, text, problems):
    if "systemctl enable drainhook-shutdown.service" not in text:
        problems.append("%s: the scriptlets do not enable the shutdown fallback" % label)
    if "enable drainhook.service" in text or "enable --now drainhook.service" in text:
        problems.append("%s: the scriptlets enable the agent before it is configured" % label)
    if "stop drainhook-shutdown" in text:
        problems.append("%s: removal stops the fallback (which would run its drain)" % label)
    if "chkconfig --add drainhook" not in text:
        problems.append("%s: no chkconfig registration for systems without systemd" % label)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dist")
    p.add_argument("--max-glibc", default="2.17")
    p.add_argument("--control", help="a binary that must fail the glibc check")
    a = p.parse_args()
    limit = tuple(int(x) for x in a.max_glibc.split("."))
    problems = []

    binary = os.path.join(a.dist, "drainhook")
    newest = newest_glibc(binary)
    print("dist/drainhook: newest GLIBC symbol version %s (limit %s)" % (fmt(newest), a.max_glibc))
    if newest is None or newest > limit:
        problems.append("dist/drainhook needs GLIBC_%s, newer than %s" % (fmt(newest), a.max_glibc))
    version = run([binary, "--version"]).strip()
    print("dist/drainhook --version: %s" % version)
    if a.control:
        c = newest_glibc(a.control)
        print("control %s: newest GLIBC %s (must exceed the limit)" % (a.control, fmt(c)))
        if c is None or c <= limit:
            problems.append("the check does not discriminate: the control binary passes it")

    debs = glob.glob(os.path.join(a.dist, "drainhook_*.deb"))
    rpms = glob.glob(os.path.join(a.dist, "drainhook-*.rpm"))
    if len(debs) != 1 or len(rpms) != 1:
        problems.append("expected one .deb and one .rpm in %s, found %s" % (a.dist, debs + rpms))
    for deb in debs:
        files = {l.split()[-1].lstrip(".") for l in run(["dpkg-deb", "-c", deb]).splitlines()}
        for want in FILES | {"/etc/init.d/drainhook"}:
            if want not in files:
                problems.append("%s lacks %s" % (os.path.basename(deb), want))
        with tempfile.TemporaryDirectory() as t:
            subprocess.run(["dpkg-deb", "-e", deb, t], check=True)
            conffiles = open(os.path.join(t, "conffiles")).read().split()
            if "/etc/drainhook/drainhook.toml" not in conffiles:
                problems.append("deb: drainhook.toml is not a conffile")
            scripts = "".join(open(os.path.join(t, s)).read() for s in ("postinst", "prerm", "postrm"))
            check_scripts("deb", scripts, problems)
            subprocess.run(["dpkg-deb", "-x", deb, t + "/root"], check=True)
            unit = open(t + "/root/usr/lib/systemd/system/drainhook-shutdown.service").read()
            if "ExecStop=/usr/bin/drainhook drain" not in unit:
                problems.append("deb: the fallback unit does not run /usr/bin/drainhook")
            same = subprocess.run(["cmp", "-s", t + "/root/usr/bin/drainhook", binary]).returncode == 0
            if not same:
                problems.append("deb: its binary is not dist/drainhook")
        print("%s: %d files, conffiles %s" % (os.path.basename(deb), len(files), conffiles))
    for rpm in rpms:
        files = set(run(["rpm", "-qlp", rpm]).split())
        for want in FILES | {"/etc/rc.d/init.d/drainhook"}:
            if want not in files:
                problems.append("%s lacks %s" % (os.path.basename(rpm), want))
        config = set(run(["rpm", "-qcp", rpm]).split())
        if "/etc/drainhook/drainhook.toml" not in config:
            problems.append("rpm: drainhook.toml is not %config")
        check_scripts("rpm", run(["rpm", "-qp", "--scripts", rpm]), problems)
        reqs = run(["rpm", "-qp", "--requires", rpm])
        if "PayloadIsZstd" in reqs:
            problems.append("rpm: a zstd payload, which Amazon Linux 1 and 2 (rpm 4.11) cannot read")
        print("%s: %d files, config %s" % (os.path.basename(rpm), len(files), sorted(config)))

    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("dist: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
