#!/usr/bin/env bash
# build-guests.sh - build the guest images that wasm86 boots, from Debian 12 (bookworm) packages.
#
# wasm86 has to boot real PC software: SeaBIOS with its VGA BIOS, a Linux kernel by direct
# kernel boot and from hard disk and CD-ROM, and memtest86+ from floppy. This script makes
# all of them from Debian's archive alone (guest packages are fetched with `apt-get download`
# and unpacked, never installed), so that every developer and CI run gets byte-identical
# images from the same package versions.
#
# Usage: build-guests.sh [OUTDIR]               (OUTDIR defaults to ./guest-images)
#
# A run whose outputs are already complete and were made by this same script (its sha256 is
# recorded in MANIFEST.txt) returns at once; set WASM86_GUEST_REBUILD=1 to rebuild anyway.
#
#   OUTDIR/bios/bios.bin, vgabios-*.bin        SeaBIOS and its VGA BIOSes (package seabios)
#   OUTDIR/bios/linuxboot_dma.bin, multiboot_dma.bin   direct-boot option ROMs (qemu-system-data)
#   OUTDIR/linux/bzImage                       Debian's i386 "686" kernel
#   OUTDIR/linux/initrd.img                    busybox + driver modules (gzip'd newc cpio)
#   OUTDIR/linux/cmdline.txt                   kernel command line: VGA + serial console
#   OUTDIR/linux/kernel-version.txt            kernel release, e.g. 6.1.0-50-686
#   OUTDIR/linux/linux.iso                     El Torito CD (isolinux); isohybrid, so also a disk
#   OUTDIR/linux/linux-hd.img                  64 MiB MBR disk, FAT16 partition at 1 MiB, syslinux
#   OUTDIR/linux/second.iso                    small ISO 9660 data disc holding /ID (media-change tests)
#   OUTDIR/memtest/memtest.img                 1.44 MB floppy that boots memtest86+
#   OUTDIR/MANIFEST.txt                        sizes, sha256s, package versions, command line
#   OUTDIR/.cache/debs/                        downloaded packages, reused by later runs
#
# The guest's /init loads the drivers for the emulated PC devices (PIIX IDE disk and CD-ROM,
# ISO 9660, floppy, e1000, ne2k-pci, virtio net and balloon, ACPI button, PS/2 mouse), writes
# one line "GUEST-READY <kernel release> <uptime>" to ttyS0 and to tty1, then keeps a shell
# running on each: on ttyS0 for a serial terminal, on tty1 for the VGA console and keyboard.
#
# Runs on Debian 12 amd64 with access to Debian's archive. The first run needs root: it adds
# i386 as a dpkg architecture and installs the host tools it lacks. Timestamps inside the
# images come from SOURCE_DATE_EPOCH (default 2000-01-01), so the outputs are reproducible.
# No loop devices or mounts: the disk image is made with sfdisk, mkfs.fat, mtools and syslinux.
set -Eeuo pipefail
umask 022

readonly PROG=${0##*/}
readonly APT_GET=(apt-get -o DPkg::Lock::Timeout=600)
readonly KERNEL_CMDLINE="console=tty0 console=ttyS0,115200 quiet loglevel=3" # last console= is /dev/console
readonly HD_SIZE_MIB=64
readonly HD_PART_START=2048 # sectors: the FAT16 partition starts at 1 MiB
readonly FLOPPY_BYTES=1474560
readonly DISK_LABEL_ID=0x7761736d # fixed MBR disk id ("wasm"), for reproducible images
# Drivers for the devices an emulated PC offers; their dependencies are added automatically.
readonly GUEST_MODULES=(
  ata_piix libata scsi_mod sd_mod sr_mod cdrom isofs floppy
  e1000 ne2k-pci 8390
  virtio virtio_ring virtio_pci virtio_pci_legacy_dev virtio_pci_modern_dev virtio_balloon virtio_net
  button psmouse
)
# Packages the guest images are made of, besides the kernel (linux-image-<abi>-686-unsigned).
readonly GUEST_PACKAGES=(busybox-static:i386 seabios memtest86+ isolinux syslinux-common qemu-system-data)
# Host command -> Debian package that provides it.
readonly -A HOST_TOOLS=(
  [cpio]=cpio [xorriso]=xorriso [mcopy]=mtools [syslinux]=syslinux [sfdisk]=fdisk
  [mkfs.fat]=dosfstools [modinfo]=kmod [xz]=xz-utils
)

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-946684800} TZ=UTC LC_ALL=C
export DEBIAN_FRONTEND=noninteractive MTOOLS_SKIP_CHECK=1

die() {
  echo "$PROG: error: $*" >&2
  exit 1
}
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

step() { echo "==> $*"; }

# Run a command whose chatter is only of use when it fails.
quietly() {
  local out
  out=$("$@" 2>&1) || {
    printf '%s\n' "$out" >&2
    die "$1 failed"
  }
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command that needs root, or stop and tell the user which command to run as root.
as_root() {
  is_root || die "root is needed; run as root: $*"
  "$@"
}

# Update apt's package lists, once a run at most. A list that fails to update (a mirror in
# the middle of a sync) is no reason to stop: the packages may well be in the others.
update_package_lists() {
  [ -z "${LISTS_UPDATED:-}" ] || return 1
  LISTS_UPDATED=1
  step "updating apt package lists"
  as_root "${APT_GET[@]}" update ||
    echo "$PROG: warning: apt-get update reported errors; going on with the lists apt has" >&2
}

# Run a command that relies on apt's package lists. If it fails, the lists may be missing (a
# fresh machine) or stale (naming packages the archive has since replaced): update, try again.
with_package_lists() {
  "$@" || { update_package_lists && "$@"; }
}

ensure_i386_architecture() {
  dpkg --print-foreign-architectures | grep -qx i386 && return
  is_root || die "i386 is not a dpkg architecture; run as root: dpkg --add-architecture i386 && apt-get update"
  step "adding i386 as a dpkg architecture"
  dpkg --add-architecture i386
  update_package_lists
}

ensure_host_tools() {
  local tool missing=()
  for tool in "${!HOST_TOOLS[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${HOST_TOOLS[$tool]}")
  done
  [ ${#missing[@]} -eq 0 ] && return
  is_root || die "host tools are missing; run as root: apt-get install ${missing[*]}"
  step "installing host tools: ${missing[*]}"
  with_package_lists "${APT_GET[@]}" install -y --no-install-recommends "${missing[@]}" ||
    die "installing ${missing[*]} failed"
}

# Set KERNEL_PKG to the package that the meta package linux-image-686:i386 depends on, in its
# -unsigned form (e.g. linux-image-6.1.0-50-686-unsigned:i386).
resolve_kernel_package() {
  local signed
  signed=$(apt-cache depends linux-image-686:i386 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$signed" ] || return 1
  KERNEL_PKG=${signed%:i386}-unsigned:i386
}

# Set DEB[package] to the cached .deb of the kernel and of each of GUEST_PACKAGES, downloading
# those that are not in the cache or whose checksum is not the one apt expects.
download_packages() {
  resolve_kernel_package || return 1
  local specs=("$KERNEL_PKG" "${GUEST_PACKAGES[@]}") listing spec name file size hash missing=()
  listing=$(apt-get download --print-uris "${specs[@]}") || return 1
  declare -gA DEB=()
  ALL_DEBS=()
  for spec in "${specs[@]}"; do
    name=${spec%:*}
    read -r _ file size hash < <(grep -F " ${name}_" <<<"$listing") || return 1
    if [ ! -f "$DEBS/$file" ] || [ "$(sha256sum <"$DEBS/$file")" != "${hash#SHA256:}  -" ]; then
      echo "    downloading $file ($((size / 1024)) KiB)"
      rm -f "$DEBS/$file"
      missing+=("$spec")
    fi
    DEB[$name]=$DEBS/$file
    ALL_DEBS+=("$DEBS/$file")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  # As root, apt downloads as user _apt, who cannot write into a root-owned cache.
  (cd "$DEBS" && apt-get -q -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null)
}

fetch_packages() {
  step "fetching packages into $DEBS"
  mkdir -p "$DEBS"
  with_package_lists download_packages ||
    die "cannot resolve or download the guest packages; check apt's sources and the network"
  remove_stale_debs
}

# Keep the cache to the packages of this run (older kernels are 50 MB each).
remove_stale_debs() {
  local deb keep
  for deb in "$DEBS"/*.deb; do
    for keep in "${ALL_DEBS[@]}"; do [ "$deb" = "$keep" ] && continue 2; done
    echo "    removing stale ${deb##*/}"
    rm -f "$deb"
  done
}

unpack_packages() {
  step "unpacking packages"
  local spec
  mkdir -p "$PKGROOT"
  for spec in "${GUEST_PACKAGES[@]}"; do
    dpkg-deb -x "${DEB[${spec%:*}]}" "$PKGROOT"
  done
  # From the kernel, only the image and the modules (skips docs and bug scripts).
  dpkg-deb --fsys-tarfile "${DEB[${KERNEL_PKG%:*}]}" |
    tar -x -C "$PKGROOT" --wildcards './boot/vmlinuz-*' './lib/modules/*'
  KERNEL_RELEASE=$(basename "$PKGROOT"/boot/vmlinuz-*)
  KERNEL_RELEASE=${KERNEL_RELEASE#vmlinuz-}
  MODDIR=$PKGROOT/lib/modules/$KERNEL_RELEASE
  [ -d "$MODDIR" ] || die "kernel package has no modules for $KERNEL_RELEASE"
}

build_bios() {
  step "bios: SeaBIOS and VGA BIOSes"
  local src=$PKGROOT/usr/share/seabios f
  mkdir -p "$STAGE/bios"
  cp "$src/bios.bin" "$STAGE/bios/"
  for f in "$src"/vgabios-*.bin; do
    [ -L "$f" ] || cp "$f" "$STAGE/bios/"
  done
  [ -f "$STAGE/bios/vgabios-stdvga.bin" ] || die "seabios package has no vgabios-stdvga.bin"
  # The option ROMs that load a kernel from fw_cfg for direct (-kernel) and multiboot boots.
  for f in linuxboot_dma.bin multiboot_dma.bin; do
    cp "$PKGROOT/usr/share/qemu/$f" "$STAGE/bios/" || die "qemu-system-data has no $f"
  done
}

# Copy module NAME (decompressed) into the initramfs after its dependencies, depth first,
# appending each to MODULE_ORDER once. Module names treat '-' and '_' as the same.
add_module() {
  local name=${1//-/_} file dest deps dep
  [ -z "${MODULE_SEEN[$name]:-}" ] || return 0
  MODULE_SEEN[$name]=1
  file=${MODULE_FILE[$name]:-}
  if [ -z "$file" ]; then
    [ -n "${MODULE_BUILTIN[$name]:-}" ] || die "kernel module $name not found in $KERNEL_RELEASE"
    return 0
  fi
  dest=lib/modules/$KERNEL_RELEASE/${file%.xz}
  mkdir -p "$INITRAMFS/${dest%/*}"
  case $file in
    *.ko.xz) xz -dc "$MODDIR/$file" >"$INITRAMFS/$dest" ;;
    *) cp "$MODDIR/$file" "$INITRAMFS/$dest" ;;
  esac
  deps=$(modinfo -F depends "$INITRAMFS/$dest")
  for dep in ${deps//,/ }; do add_module "$dep"; done
  MODULE_ORDER+=("/$dest")
}

# Index the kernel's modules (files and built-ins) by name.
index_modules() {
  local f name
  declare -gA MODULE_FILE=() MODULE_BUILTIN=()
  while read -r f; do
    name=${f##*/}
    name=${name%.xz}
    name=${name%.ko}
    MODULE_FILE[${name//-/_}]=$f
  done < <(cd "$MODDIR" && find kernel -name '*.ko' -o -name '*.ko.xz')
  while read -r f; do
    name=${f##*/}
    name=${name%.ko}
    MODULE_BUILTIN[${name//-/_}]=1
  done <"$MODDIR/modules.builtin"
}

install_modules() {
  local m
  index_modules
  declare -gA MODULE_SEEN=()
  MODULE_ORDER=()
  for m in "${GUEST_MODULES[@]}"; do add_module "$m"; done
  printf '%s\n' "${MODULE_ORDER[@]}" >"$INITRAMFS/etc/modules.order"
}

write_init() {
  cat >"$INITRAMFS/init" <<'EOF'
#!/bin/busybox sh
# Init of the wasm86 test guest: mount the kernel filesystems, load the drivers, announce
# GUEST-READY, then keep a shell on the serial port and one on the VGA console.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root

# Modules come in dependency order. A driver whose hardware is absent may fail: that is fine.
while read -r ko; do
  if insmod "$ko" 2>/dev/null; then echo "loaded ${ko##*/}"; else echo "failed ${ko##*/}"; fi
done </etc/modules.order >/run/modules.log

read -r uptime _ </proc/uptime
ready="GUEST-READY $(uname -r) $uptime"
echo "$ready" 2>/dev/null >/dev/ttyS0
echo "$ready" 2>/dev/null >/dev/tty1

# Shells are respawned when they exit; the pause keeps a missing terminal from spinning.
(while :; do TERM=linux setsid -c sh </dev/tty1 >/dev/tty1 2>&1; sleep 1; done) &
while :; do TERM=vt100 setsid -c sh </dev/ttyS0 >/dev/ttyS0 2>&1; sleep 1; done
EOF
  chmod 755 "$INITRAMFS/init"
}

build_initramfs() {
  step "linux: initramfs"
  rm -rf "$INITRAMFS"
  mkdir -p "$INITRAMFS"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root}
  install -m 755 "$PKGROOT/bin/busybox" "$INITRAMFS/bin/busybox"
  install_modules
  write_init
  # Sorted names, owner root, fixed times and inode numbers: same inputs, same bytes.
  find "$INITRAMFS" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  (cd "$INITRAMFS" && find . -mindepth 1 | sort |
    cpio -o -H newc --owner=0:0 --reproducible --quiet) | gzip -9 -n >"$STAGE/linux/initrd.img"
}

build_kernel_files() {
  step "linux: kernel $KERNEL_RELEASE"
  mkdir -p "$STAGE/linux"
  cp "$PKGROOT/boot/vmlinuz-$KERNEL_RELEASE" "$STAGE/linux/bzImage"
  echo "$KERNEL_RELEASE" >"$STAGE/linux/kernel-version.txt"
  echo "$KERNEL_CMDLINE" >"$STAGE/linux/cmdline.txt"
}

# Stage what both boot media carry, with fixed timestamps: /boot/bzImage, /boot/initrd.img,
# and a syslinux.cfg (isolinux.cfg on the CD) that boots them at once, with no prompt.
stage_boot_files() {
  BOOTFILES=$WORK/bootfiles
  mkdir -p "$BOOTFILES/boot"
  cp "$STAGE/linux/bzImage" "$STAGE/linux/initrd.img" "$BOOTFILES/boot/"
  cat >"$BOOTFILES/syslinux.cfg" <<EOF
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX /boot/bzImage
  INITRD /boot/initrd.img
  APPEND $KERNEL_CMDLINE
EOF
  find "$BOOTFILES" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

build_iso() {
  step "linux: linux.iso (isolinux, isohybrid)"
  local root=$WORK/iso
  mkdir -p "$root/isolinux"
  cp "$PKGROOT/usr/lib/ISOLINUX/isolinux.bin" "$PKGROOT/usr/lib/syslinux/modules/bios/ldlinux.c32" "$root/isolinux/"
  cp "$BOOTFILES/syslinux.cfg" "$root/isolinux/isolinux.cfg"
  cp -r "$BOOTFILES/boot" "$root/"
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  quietly xorriso -as mkisofs -quiet -o "$STAGE/linux/linux.iso" -r -V WASM86_LINUX \
    -isohybrid-mbr "$PKGROOT/usr/lib/ISOLINUX/isohdpfx.bin" \
    -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table \
    "$root"
}

build_hd_image() {
  step "linux: linux-hd.img (MBR, FAT16, syslinux)"
  local img=$STAGE/linux/linux-hd.img
  local part_sectors=$((HD_SIZE_MIB * 2048 - HD_PART_START))
  local part="$img@@$((HD_PART_START * 512))"
  truncate -s "${HD_SIZE_MIB}M" "$img"
  sfdisk --quiet "$img" <<EOF
label: dos
label-id: $DISK_LABEL_ID
unit: sectors
start=$HD_PART_START, size=$part_sectors, type=6, bootable
EOF
  dd if="$PKGROOT/usr/lib/syslinux/mbr/mbr.bin" of="$img" bs=440 count=1 conv=notrunc status=none
  mkfs.fat -F 16 -n WASM86 --invariant -h "$HD_PART_START" --offset "$HD_PART_START" \
    "$img" $((part_sectors / 2)) >/dev/null
  mmd -i "$part" ::/syslinux ::/boot
  syslinux --install --offset $((HD_PART_START * 512)) --directory /syslinux "$img"
  mcopy -m -i "$part" "$BOOTFILES/syslinux.cfg" ::/syslinux/
  mcopy -m -i "$part" "$BOOTFILES/boot/bzImage" "$BOOTFILES/boot/initrd.img" ::/boot/
}

# A second, tiny data disc whose /ID names it: tests swap it in with QMP `change`.
build_second_iso() {
  step "linux: second.iso (data disc with /ID)"
  local root=$WORK/second
  mkdir -p "$root"
  echo "WASM86-SECOND-DISC" >"$root/ID"
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  quietly xorriso -as mkisofs -quiet -o "$STAGE/linux/second.iso" -r -V WASM86_SECOND "$root"
}

build_memtest_floppy() {
  step "memtest: memtest.img (1.44 MB floppy)"
  local bin=$PKGROOT/boot/memtest86+ia32.bin
  [ "$(stat -c %s "$bin")" -le $FLOPPY_BYTES ] || die "memtest86+ia32.bin does not fit on a floppy"
  mkdir -p "$STAGE/memtest"
  cp "$bin" "$STAGE/memtest/memtest.img"
  truncate -s $FLOPPY_BYTES "$STAGE/memtest/memtest.img"
}

write_manifest() {
  local deb f
  {
    echo "# wasm86 guest images, built by scripts/build-guests.sh"
    echo "script-sha256: $SCRIPT_SHA"
    echo "kernel-release: $KERNEL_RELEASE"
    echo "cmdline: $KERNEL_CMDLINE"
    echo "source-date-epoch: $SOURCE_DATE_EPOCH"
    echo
    echo "# packages"
    for deb in "${ALL_DEBS[@]}"; do
      # shellcheck disable=SC2016 # ${...} are dpkg's format fields
      dpkg-deb --show --showformat='${Package} ${Version} ${Architecture}\n' "$deb"
    done
    echo
    echo "# files: size sha256 path"
    (cd "$STAGE" && find . -type f -printf '%P\n' | sort | while read -r f; do
      printf '%10d %s %s\n' "$(stat -c %s "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
    done)
    echo
    echo "# modules in the initramfs, in load order"
    printf '%s\n' "${MODULE_ORDER[@]##*/}"
  } >"$WORK/MANIFEST.txt"
}

# Replace the previous outputs only once every new one has been built.
publish() {
  local d
  for d in bios linux memtest; do
    rm -rf "${OUTDIR:?}/$d"
    mv "$STAGE/$d" "$OUTDIR/$d"
  done
  mv "$WORK/MANIFEST.txt" "$OUTDIR/MANIFEST.txt"
  rm -rf "$WORK"
}

print_summary() {
  echo
  echo "Guest images in $OUTDIR (kernel $KERNEL_RELEASE, ${#MODULE_ORDER[@]} modules, ${SECONDS}s):"
  (cd "$OUTDIR" && find bios linux memtest MANIFEST.txt -type f | sort | xargs stat -c '%s %n' |
    numfmt --to=iec --padding=8 --field=1)
}

main() {
  [ $# -le 1 ] || die "usage: $PROG [OUTDIR]"
  mkdir -p "${1:-guest-images}"
  OUTDIR=$(cd "${1:-guest-images}" && pwd)
  SCRIPT_SHA=$(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)
  if [ -z "${WASM86_GUEST_REBUILD:-}" ] && [ -f "$OUTDIR/MANIFEST.txt" ] &&
    grep -qx "script-sha256: $SCRIPT_SHA" "$OUTDIR/MANIFEST.txt" &&
    [ -f "$OUTDIR/linux/second.iso" ] && [ -f "$OUTDIR/bios/linuxboot_dma.bin" ]; then
    echo "guest images in $OUTDIR are up to date"
    return 0
  fi
  DEBS=$OUTDIR/.cache/debs
  WORK=$OUTDIR/.cache/work
  PKGROOT=$WORK/pkgroot
  INITRAMFS=$WORK/initramfs
  STAGE=$WORK/out
  rm -rf "$WORK"
  mkdir -p "$STAGE"

  ensure_i386_architecture
  ensure_host_tools
  fetch_packages
  unpack_packages
  build_bios
  build_kernel_files
  build_initramfs
  stage_boot_files
  build_iso
  build_hd_image
  build_second_iso
  build_memtest_floppy
  write_manifest
  publish
  print_summary
}

main "$@"
