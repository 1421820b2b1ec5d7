#!/usr/bin/env bash
# make-base.sh builds pmrun's offline base image from Debian packages, without a
# registry: debootstrap a minimal bookworm with Python 3, NumPy, cloudpickle and
# tqdm (task mode's workers use them), trim it, and `docker import` the tree as
# one layer.
#
#   docker/make-base.sh [IMAGE]        # default pmrun-base:bookworm (or $PMRUN_BASE_IMAGE)
#   docker build -f docker/Dockerfile --build-arg BASE=pmrun-base:bookworm -t pmrun:latest .
#
# The image is cached: if IMAGE already exists with every package below, the
# script prints so and exits; an IMAGE that lacks some (made by an older
# version of this script) is rebuilt. Delete it (`docker image rm IMAGE`) to
# rebuild anyway. Needs root (debootstrap) and Docker. Environment:
# PMRUN_DEBIAN_MIRROR (default http://deb.debian.org/debian), PMRUN_DEBIAN_SUITE
# (default bookworm: bin/pmrun links against its glibc).
set -euo pipefail

image="${1:-${PMRUN_BASE_IMAGE:-pmrun-base:bookworm}}"
mirror="${PMRUN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${PMRUN_DEBIAN_SUITE:-bookworm}"
packages="python3,python3-numpy,python3-cloudpickle,python3-tqdm,python3-venv,python3-pip,ca-certificates"

say() { printf 'make-base: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "docker not found"
docker version >/dev/null 2>&1 || die "the Docker daemon does not answer (is it running, may you use it?)"

old=""
if docker image inspect "$image" >/dev/null 2>&1; then
	if docker run --rm "$image" dpkg-query -W ${packages//,/ } >/dev/null 2>&1; then
		say "$image already exists (cached); remove it with 'docker image rm $image' to rebuild"
		exit 0
	fi
	old="$(docker image inspect -f '{{.Id}}' "$image")"
	say "$image lacks some of $packages: rebuilding it"
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run as root (sudo $0 $*)"

if ! command -v debootstrap >/dev/null 2>&1; then
	say "installing debootstrap with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null || die "apt-get update failed"
	apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
		die "could not install debootstrap"
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/pmrun-base.XXXXXX")"
# The rootfs belongs to root and may hold mounts left by a failed debootstrap.
cleanup() {
	for m in proc sys dev/pts dev; do
		umount -l "$dir/$m" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
# step K/3 WHAT: one line per step and per debootstrap phase, with the time
# since the start (pmrun --docker shows these when it builds the base itself).
step() { say "step $1/3 $2 ($(($(date +%s) - start))s)"; }
# phases passes debootstrap's output to its log and names each phase
# (Retrieving, Validating, Extracting, Unpacking, Configuring...) the first
# time it starts: per-package lines alternate between phases.
phases() {
	local line verb seen=" "
	while IFS= read -r line; do
		printf '%s\n' "$line" >>"$dir.log"
		case "$line" in
		"I: "*)
			verb="${line#I: }"
			verb="${verb%% *}"
			case "$seen" in
			*" $verb "*) ;;
			*)
				seen="$seen$verb "
				line="${line#I: }"
				step 1 "debootstrap: ${line:0:60}"
				;;
			esac
			;;
		esac
	done
}
say "debootstrap $suite ($packages) from $mirror into $dir; this takes a few minutes"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" 2>&1 | phases; then
	tail -n 20 "$dir.log" >&2 || true
	rm -f "$dir.log"
	die "debootstrap failed (is $mirror reachable?)"
fi
rm -f "$dir.log"

step 2 "trimming the tree"
chroot "$dir" apt-get clean
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc "$dir"/usr/share/man \
	"$dir"/usr/share/locale "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log \
	"$dir"/var/cache/debconf/*-old

step 3 "importing as $image"
tar -C "$dir" --numeric-owner -c . |
	docker import \
		-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		-c 'ENV LANG=C.UTF-8' \
		-c 'CMD ["/bin/bash"]' \
		-m "pmrun base: debian $suite minbase + $packages" \
		- "$image" >/dev/null

# The old image goes unless images built on it (agents' images) still use it.
[ -z "$old" ] || docker image rm "$old" >/dev/null 2>&1 || true

size=$(docker image inspect -f '{{.Size}}' "$image")
say "built $image ($((size / 1000000)) MB) in $(($(date +%s) - start)) s"
