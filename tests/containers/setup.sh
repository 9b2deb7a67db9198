#!/usr/bin/env bash
# CI's container runtime: Debian's podman with runc (crun fails here: "cgroups in hybrid mode
# not supported"), mmdebstrap for a base image made from Debian's archive (no image registry
# is reachable). Then the CPU transformers image, as `make images` builds it.
#   tests/containers/setup.sh      (root, Debian 12; CONTAINERS_CONF points at containers.conf)
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq podman runc mmdebstrap uidmap >/dev/null
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}}'
make images
