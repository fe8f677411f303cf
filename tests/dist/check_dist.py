#!/usr/bin/env python3
"""Checks what `make dist` built: the portable binaries of both CPUs, the four packages and
the Elastic Beanstalk bundle.

  check_dist.py DIST_DIR [--max-glibc 2.17] [--control BINARY] [--control-aarch64 BINARY]
                [--bundle DIR]

- dist/drainhook-x86_64 and dist/drainhook-aarch64: each is an ELF file for its CPU
  (e_machine, read from the header: each binary is the other's control); the newest
  GLIBC_x.y in its ELF version needs (.gnu.version_r, read here from the file itself: no
  binutils, no network) is at most --max-glibc; it runs (`--version`; the aarch64 one under
  qemu-aarch64-static) and says the same version as the other. --control and
  --control-aarch64 name binaries that must FAIL the glibc check (the normal x86_64 build,
  linked against this machine's newer glibc; an aarch64 program linked against a newer
  glibc): the check is shown to discriminate on both CPUs.
- the RPM and the DEB of each CPU: the architecture in their metadata and file names
  (x86_64/amd64, aarch64/arm64), their binary (the same bytes as that CPU's dist binary),
  their file lists, the config file marked as such, the units' ExecStart pointing at
  /usr/bin/drainhook, and the scriptlets (enable the fallback; leave the agent to the
  operator; never stop the fallback at removal).
- --bundle DIR (`make eb-bundle`'s dist/eb): its installer, run as the .ebextensions run it
  into a scratch root for an x86_64 and for an aarch64 machine, installs that CPU's binary,
  and refuses, naming the CPU, a machine it has no binary for.
Exit 1 with the reasons on any failure.
"""

import argparse
import hashlib
import os
import re
import struct
import subprocess
import sys
import tempfile

SHT_GNU_VERNEED = 0x6FFFFFFE
# e_machine as `uname -m` names it; the packages' names for each CPU.
ARCHES = {
    "x86_64": {"e_machine": 62, "deb": "amd64", "rpm": "x86_64"},
    "aarch64": {"e_machine": 183, "deb": "arm64", "rpm": "aarch64"},
}
QEMU = "qemu-aarch64-static"


def elf_header(data, path):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("%s is not a 64-bit little-endian ELF file" % path)


def elf_machine(path):
    """The CPU an ELF64 little-endian file is for, as `uname -m` names it."""
    with open(path, "rb") as f:
        data = f.read(64)
    elf_header(data, path)
    machine, = struct.unpack_from("<H", data, 0x12)
    for name, a in ARCHES.items():
        if a["e_machine"] == machine:
            return name
    return "e_machine %d" % machine


def version_needs(path):
    """{library: [version names]} from an ELF64 little-endian file's .gnu.version_r."""
    with open(path, "rb") as f:
        data = f.read()
    elf_header(data, path)
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


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_binary(arch, binary, args):
    """Runs a dist binary: natively, or the aarch64 one under qemu-user."""
    cmd = [binary] + args
    if arch == "aarch64" and os.uname().machine != "aarch64":
        cmd = [QEMU, "-L", "/"] + cmd
    return run(cmd)


FILES = {"/usr/bin/drainhook", "/usr/lib/systemd/system/drainhook.service",
         "/usr/lib/systemd/system/drainhook-shutdown.service", "/etc/drainhook/drainhook.toml",
         "/usr/share/doc/drainhook/README.md", "/usr/share/drainhook/filebeat-input.yml"}
# The README's links into docs/ resolve on the instance: every page ships beside it.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES |= {"/usr/share/doc/drainhook/" + os.path.relpath(os.path.join(d, f), _REPO)
          for d, _, fs in os.walk(os.path.join(_REPO, "docs")) for f in fs if f.endswith(".md")}


def check_scripts(label, text, problems):
    if "systemctl enable drainhook-shutdown.service" not in text:
        problems.append("%s: the scriptlets do not enable the shutdown fallback" % label)
    if "enable drainhook.service" in text or "enable --now drainhook.service" in text:
        problems.append("%s: the scriptlets enable the agent before it is configured" % label)
    if "stop drainhook-shutdown" in text:
        problems.append("%s: removal stops the fallback (which would run its drain)" % label)
    if "chkconfig --add drainhook" not in text:
        problems.append("%s: no chkconfig registration for systems without systemd" % label)


def check_binary(dist, arch, limit, problems):
    """One CPU's dist binary: its ELF machine, its glibc bound, its --version."""
    binary = os.path.join(dist, "drainhook-" + arch)
    if not os.path.exists(binary):
        problems.append("%s is missing" % binary)
        return None
    machine = elf_machine(binary)
    newest = newest_glibc(binary)
    print("%s: ELF for %s, newest GLIBC symbol version %s (limit %s), %.1f MB"
          % (binary, machine, fmt(newest), fmt(limit), os.path.getsize(binary) / 1e6))
    if machine != arch:
        problems.append("%s is built for %s, not %s" % (binary, machine, arch))
    if newest is None or newest > limit:
        problems.append("%s needs GLIBC_%s, newer than %s" % (binary, fmt(newest), fmt(limit)))
    try:
        version = run_binary(arch, binary, ["--version"]).strip()
    except (OSError, subprocess.CalledProcessError) as e:
        problems.append("%s does not run: %s" % (binary, e))
        return None
    print("%s --version: %s" % (binary, version))
    return version


def check_control(label, control, arch, limit, problems):
    """A binary that must fail the glibc check, so the check is shown to discriminate."""
    machine = elf_machine(control)
    newest = newest_glibc(control)
    print("control %s (%s): ELF for %s, newest GLIBC %s (must exceed the limit)"
          % (control, label, machine, fmt(newest)))
    if machine != arch:
        problems.append("the %s control %s is built for %s" % (arch, control, machine))
    if newest is None or newest <= limit:
        problems.append("the check does not discriminate: the %s control passes it" % arch)


def check_deb(deb, arch, binary, problems):
    name = os.path.basename(deb)
    want_arch = ARCHES[arch]["deb"]
    got_arch = run(["dpkg-deb", "-f", deb, "Architecture"]).strip()
    if got_arch != want_arch:
        problems.append("%s: Architecture %r, not %r" % (name, got_arch, want_arch))
    files = {l.split()[-1].lstrip(".") for l in run(["dpkg-deb", "-c", deb]).splitlines()}
    for want in FILES | {"/etc/init.d/drainhook"}:
        if want not in files:
            problems.append("%s lacks %s" % (name, want))
    with tempfile.TemporaryDirectory() as t:
        subprocess.run(["dpkg-deb", "-e", deb, t], check=True)
        conffiles = open(os.path.join(t, "conffiles")).read().split()
        if "/etc/drainhook/drainhook.toml" not in conffiles:
            problems.append("%s: drainhook.toml is not a conffile" % name)
        scripts = "".join(open(os.path.join(t, s)).read() for s in ("postinst", "prerm", "postrm"))
        check_scripts(name, scripts, problems)
        subprocess.run(["dpkg-deb", "-x", deb, t + "/root"], check=True)
        unit = open(t + "/root/usr/lib/systemd/system/drainhook-shutdown.service").read()
        if "ExecStop=/usr/bin/drainhook drain" not in unit:
            problems.append("%s: the fallback unit does not run /usr/bin/drainhook" % name)
        same = sha256(t + "/root/usr/bin/drainhook") == sha256(binary)
        if not same:
            problems.append("%s: its binary is not %s" % (name, binary))
    print("%s: Architecture %s, %d files, its binary is %s: %s, conffiles %s"
          % (name, got_arch, len(files), os.path.basename(binary), "yes" if same else "NO",
             conffiles))


def check_rpm(rpm, arch, binary, problems):
    name = os.path.basename(rpm)
    want_arch = ARCHES[arch]["rpm"]
    got_arch = run(["rpm", "-qp", "--qf", "%{ARCH}", rpm]).strip()
    if got_arch != want_arch:
        problems.append("%s: ARCH %r, not %r" % (name, got_arch, want_arch))
    files = set(run(["rpm", "-qlp", rpm]).split())
    for want in FILES | {"/etc/rc.d/init.d/drainhook"}:
        if want not in files:
            problems.append("%s lacks %s" % (name, want))
    config = set(run(["rpm", "-qcp", rpm]).split())
    if "/etc/drainhook/drainhook.toml" not in config:
        problems.append("%s: drainhook.toml is not %%config" % name)
    check_scripts(name, run(["rpm", "-qp", "--scripts", rpm]), problems)
    reqs = run(["rpm", "-qp", "--requires", rpm])
    if "PayloadIsZstd" in reqs:
        problems.append("%s: a zstd payload, which Amazon Linux 1 and 2 (rpm 4.11) cannot read" % name)
    # --dump: path size mtime digest ... (the digest is SHA-256: the spec asks for it)
    digests = {l.split()[0]: l.split()[3] for l in run(["rpm", "-qp", "--dump", rpm]).splitlines()}
    same = digests.get("/usr/bin/drainhook") == sha256(binary)
    if not same:
        problems.append("%s: its binary is not %s" % (name, binary))
    print("%s: ARCH %s, %d files, its binary is %s: %s, config %s"
          % (name, got_arch, len(files), os.path.basename(binary), "yes" if same else "NO",
             sorted(config)))


def check_packages(dist, version, problems):
    want = {}
    for arch, a in ARCHES.items():
        want["drainhook_%s_%s.deb" % (version, a["deb"])] = (check_deb, arch)
        want["drainhook-%s-1.%s.rpm" % (version, a["rpm"])] = (check_rpm, arch)
    found = sorted(f for f in os.listdir(dist) if re.fullmatch(r"drainhook[-_].*\.(deb|rpm)", f))
    if sorted(want) != found:
        problems.append("expected the packages %s in %s, found %s" % (sorted(want), dist, found))
    for f in found:
        if f in want:
            check, arch = want[f]
            check(os.path.join(dist, f), arch, os.path.join(dist, "drainhook-" + arch), problems)


def check_bundle(bundle, dist, problems):
    """The bundle's installer, as the .ebextensions run it, on either kind of machine."""
    ebext = open(os.path.join(bundle, ".ebextensions", "01-drainhook-instance.config")).read()
    command = re.search(r"command: (.*)", ebext).group(1).strip()
    print("bundle %s: the .ebextensions run: %s" % (bundle, command))
    argv = command.split()
    if argv[:2] != ["bash", "drainhook/install.sh"]:
        problems.append("bundle: the .ebextensions do not run drainhook/install.sh: %s" % command)
        return
    for machine in list(ARCHES) + ["armv7l"]:
        with tempfile.TemporaryDirectory() as root:
            env = dict(os.environ, DRAINHOOK_ROOT=root, DRAINHOOK_MACHINE=machine)
            r = subprocess.run(argv + ["--init", "systemd"], cwd=bundle, env=env,
                               capture_output=True, text=True)
            installed = os.path.join(root, "usr/local/bin/drainhook")
            if machine not in ARCHES:
                ok = r.returncode != 0 and machine in r.stderr and not os.path.exists(installed)
                print("  on an %s machine: exit %d: %s" % (machine, r.returncode, r.stderr.strip()))
                if not ok:
                    problems.append("bundle: on an %s machine the installer did not refuse, naming "
                                    "the CPU: %s" % (machine, r.stderr.strip()))
                continue
            same = r.returncode == 0 and os.path.exists(installed) and \
                sha256(installed) == sha256(os.path.join(dist, "drainhook-" + machine))
            print("  on an %s machine: exit %d, installed drainhook-%s: %s"
                  % (machine, r.returncode, machine, "yes" if same else "NO"))
            if not same:
                problems.append("bundle: on an %s machine the installer did not install "
                                "drainhook-%s: %s" % (machine, machine, r.stderr.strip()))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dist")
    p.add_argument("--max-glibc", default="2.17")
    p.add_argument("--control", help="an x86_64 binary that must fail the glibc check")
    p.add_argument("--control-aarch64", help="an aarch64 binary that must fail the glibc check")
    p.add_argument("--bundle", help="make eb-bundle's directory (dist/eb)")
    a = p.parse_args()
    limit = tuple(int(x) for x in a.max_glibc.split("."))
    problems = []

    versions = {arch: check_binary(a.dist, arch, limit, problems) for arch in ARCHES}
    if len(set(versions.values())) != 1:
        problems.append("the binaries say different versions: %s" % versions)
    for label, control, arch in (("the normal build", a.control, "x86_64"),
                                 ("linked against a newer glibc", a.control_aarch64, "aarch64")):
        if control:
            check_control(label, control, arch, limit, problems)

    version = (versions.get("x86_64") or "drainhook ?").split()[-1]
    check_packages(a.dist, version, problems)
    if a.bundle:
        check_bundle(a.bundle, a.dist, problems)

    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("dist: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
