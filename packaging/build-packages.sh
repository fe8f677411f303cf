#!/usr/bin/env bash
# Builds the RPM and the DEB from a built binary, with the distributions' own tools
# (rpmbuild, dpkg-deb): no packaging tool to compile or download.
#
#   packaging/build-packages.sh BINARY VERSION OUTDIR [ARCH]
#
# ARCH is the Rust target's CPU (x86_64 or aarch64; default x86_64). Both packages hold:
#   /usr/bin/drainhook
#   /usr/lib/systemd/system/drainhook.service, drainhook-shutdown.service
#   /etc/init.d/drainhook (deb) or /etc/rc.d/init.d/drainhook (rpm): the SysV fallback,
#     used only where systemd is not the init
#   /etc/drainhook/drainhook.toml (example, every key commented out; a config file)
#   /usr/share/doc/drainhook/README.md, and docs/ beside it
#   /usr/share/drainhook/filebeat-input.yml: filebeat's input for the drain report, which
#     postinst puts in /etc/filebeat/inputs.d/ where filebeat is installed
# The units and the SysV script name /usr/local/bin/drainhook (where infra/install.sh puts
# it); in the packages that path becomes /usr/bin/drainhook.
set -euo pipefail

binary=$1
version=$2
out=$3
arch=${4:-x86_64}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
case "$arch" in
    x86_64) deb_arch=amd64 ;;
    aarch64) deb_arch=arm64 ;;
    *) echo "build-packages.sh: unknown arch $arch" >&2; exit 2 ;;
esac
for tool in dpkg-deb rpmbuild; do
    command -v "$tool" >/dev/null || { echo "build-packages.sh: $tool is missing (apt-get install ${tool/dpkg-deb/dpkg}${tool/rpmbuild/ rpm})" >&2; exit 1; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# stage ROOT INITD: the files of a package under ROOT, the SysV script in INITD
stage() {
    local root=$1 initd=$2
    install -D -m 0755 "$binary" "$root/usr/bin/drainhook"
    for u in drainhook.service drainhook-shutdown.service; do
        install -D -m 0644 "$repo/systemd/$u" "$root/usr/lib/systemd/system/$u"
        sed -i 's|/usr/local/bin/drainhook|/usr/bin/drainhook|g' "$root/usr/lib/systemd/system/$u"
    done
    install -D -m 0755 "$repo/systemd/sysvinit/drainhook" "$root$initd/drainhook"
    sed -i 's|/usr/local/bin/drainhook|/usr/bin/drainhook|g' "$root$initd/drainhook"
    install -D -m 0644 "$here/drainhook.toml" "$root/etc/drainhook/drainhook.toml"
    install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/drainhook/README.md"
    # The pages the README links to, at the same relative paths.
    (cd "$repo" && find docs -name '*.md') | while read -r f; do
        install -D -m 0644 "$repo/$f" "$root/usr/share/doc/drainhook/$f"
    done
    install -D -m 0644 "$repo/infra/filebeat/drainhook-report.yml" "$root/usr/share/drainhook/filebeat-input.yml"
}

summary="Holds a terminating EC2 Auto Scaling instance until its log shippers have delivered every log line"

# -- DEB --------------------------------------------------------------------------------
deb=$work/deb
stage "$deb" /etc/init.d
mkdir -p "$deb/DEBIAN"
cat >"$deb/DEBIAN/control" <<CONTROL
Package: drainhook
Version: $version
Architecture: $deb_arch
Maintainer: drainhook maintainers <drainhook@users.noreply.github.com>
Section: admin
Priority: optional
Homepage: https://github.com/drainhook/drainhook
Description: $summary
 drainhook keeps an instance that Auto Scaling is terminating in Terminating:Wait
 until its log shippers (filebeat, Elastic Agent, the CloudWatch agent, Fluent Bit,
 Vector) have delivered every byte of every log file they track, then completes the
 lifecycle action. A shutdown fallback drains at shutdowns no hook announces.
CONTROL
echo /etc/drainhook/drainhook.toml >"$deb/DEBIAN/conffiles"
echo /etc/init.d/drainhook >>"$deb/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "$here/scripts/$s" "$deb/DEBIAN/$s"; done
dpkg-deb --root-owner-group -Zxz --build "$deb" "$out/drainhook_${version}_${deb_arch}.deb" >/dev/null

# -- RPM --------------------------------------------------------------------------------
rpmroot=$work/rpm
stage "$rpmroot/stage" /etc/rc.d/init.d
mkdir -p "$rpmroot"/{BUILD,RPMS,SPECS,SRPMS,SOURCES}
spec=$rpmroot/SPECS/drainhook.spec
{
    cat <<SPEC
Name: drainhook
Version: $version
Release: 1
Summary: $summary
License: Apache-2.0
URL: https://github.com/drainhook/drainhook
AutoReqProv: no
Requires: /bin/sh

%description
drainhook keeps an instance that Auto Scaling is terminating in Terminating:Wait
until its log shippers (filebeat, Elastic Agent, the CloudWatch agent, Fluent Bit,
Vector) have delivered every byte of every log file they track, then completes the
lifecycle action. A shutdown fallback drains at shutdowns no hook announces.

%install
cp -a $rpmroot/stage/. %{buildroot}/

%files
%attr(0755,root,root) /usr/bin/drainhook
%attr(0644,root,root) /usr/lib/systemd/system/drainhook.service
%attr(0644,root,root) /usr/lib/systemd/system/drainhook-shutdown.service
%attr(0755,root,root) %config(noreplace) /etc/rc.d/init.d/drainhook
%dir /etc/drainhook
%attr(0644,root,root) %config(noreplace) /etc/drainhook/drainhook.toml
%doc /usr/share/doc/drainhook/README.md
%doc /usr/share/doc/drainhook/docs
%attr(0644,root,root) /usr/share/drainhook/filebeat-input.yml

SPEC
    echo "%post"
    cat "$here/scripts/postinst"
    echo
    echo "%preun"
    cat "$here/scripts/prerm"
    echo
    echo "%postun"
    cat "$here/scripts/postrm"
} >"$spec"
rpmbuild --quiet -bb --target "$arch" --define "_topdir $rpmroot" --define "_build_id_links none" \
    --define "__strip /bin/true" --define "_binary_payload w6.xzdio" \
    --define "_binary_filedigest_algorithm 8" "$spec"
cp "$rpmroot"/RPMS/"$arch"/drainhook-"$version"-1."$arch".rpm "$out/"
echo "packages: $out/drainhook_${version}_${deb_arch}.deb $out/drainhook-${version}-1.${arch}.rpm"
