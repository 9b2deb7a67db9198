"""Which physical GPU each of this process's CUDA devices is: its UUID, from the CUDA driver.

A numeric ``CUDA_VISIBLE_DEVICES`` entry is an index in CUDA's enumeration, fastest GPU
first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, while NVML enumerates by PCI bus id; and
under SLURM's device cgroups every job's GPU is CUDA index 0. Only the driver knows which
GPU an index is, so it is asked, through ``libcuda.so.1`` (``cuDeviceGetUuid``), in a short
child process: initialising CUDA here would break engines that fork workers later.
"""

from __future__ import annotations

import json
import subprocess
import sys

from llenergymeasure.errors import MeterError

# Runs in the child with this process's environment (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER).
_ASK_DRIVER = r"""
import ctypes, json
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as e:
    print(json.dumps({"error": f"libcuda.so.1 cannot be loaded ({e})"}))
    raise SystemExit(0)
class CUuuid(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_ubyte * 16)]
def call(name, *args):
    code = getattr(cuda, name)(*args)
    if code != 0:
        print(json.dumps({"error": f"{name} returned CUDA error {code}"}))
        raise SystemExit(0)
call("cuInit", 0)
count = ctypes.c_int()
call("cuDeviceGetCount", ctypes.byref(count))
get_uuid = "cuDeviceGetUuid_v2" if hasattr(cuda, "cuDeviceGetUuid_v2") else "cuDeviceGetUuid"
uuids = []
for ordinal in range(count.value):
    device, uuid = ctypes.c_int(), CUuuid()
    call("cuDeviceGet", ctypes.byref(device), ordinal)
    call(get_uuid, ctypes.byref(uuid), device)
    uuids.append(bytes(uuid.bytes).hex())
print(json.dumps({"uuids": uuids}))
"""


def nvml_uuid(raw_hex: str) -> str:
    """The 16 UUID bytes (hex) as NVML writes them: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."""
    h = raw_hex.lower()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def cuda_device_uuids(timeout_s: float = 60.0) -> list[str]:
    """UUIDs (NVML's spelling) of the CUDA devices this process sees, in CUDA's order.

    Raises:
        MeterError: The CUDA driver cannot be loaded or asked (the reason is in the message).
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _ASK_DRIVER],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise MeterError(f"CUDA driver: no answer within {timeout_s:g} s") from e
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise MeterError(f"CUDA driver: asking it for device UUIDs failed: {tail[0]}")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise MeterError(f"CUDA driver: {answer['error']}")
    return [nvml_uuid(u) for u in answer["uuids"]]
