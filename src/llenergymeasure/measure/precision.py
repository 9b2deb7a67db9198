"""Numerical precision of a run (weights, activations, compute) and its precision factor.

The precision factor is a convention, recorded as one with its source: it scales theoretical
FLOPs into "effective" FLOPs by how many times faster a device's peak throughput is at the
compute precision than at 16-bit, never by a cost measured on the run's device.
"""

from __future__ import annotations

from llenergymeasure.results.models import PrecisionMetadata

# Relative cost of one FLOP at a compute precision, for "effective" FLOPs: a convention, not a
# measurement. 16-bit is the reference; the 8- and 4-bit values are the inverse of NVIDIA's dense
# Tensor Core peak-throughput ratios to 16-bit (PRECISION_FACTOR_SOURCES); the others are llem's.
PRECISION_FACTORS = {
    "fp32": 1.0,
    "tf32": 1.0,
    "fp16": 1.0,
    "bf16": 1.0,
    "fp8": 0.5,
    "int8": 0.5,
    "int4": 0.25,
    "mixed": 0.75,
}
A100 = "NVIDIA A100 Tensor Core GPU datasheet (dense, without sparsity)"
H100 = "NVIDIA H100 Tensor Core GPU datasheet, SXM (dense, without sparsity)"
PRECISION_FACTOR_SOURCES = {
    "fp16": "the reference precision: 1.0 by definition",
    "bf16": "the reference precision: 1.0 by definition",
    "fp32": (
        "1.0 by llem's convention, not a throughput ratio (datasheets rate FP32 well below "
        "16-bit Tensor Core throughput: H100 SXM 67 vs 989.5 TFLOPS)"
    ),
    "tf32": (
        "1.0 by llem's convention, not a throughput ratio (the datasheets give TF32 half the "
        f"16-bit Tensor Core rate: {H100}: 494.7 vs 989.5 TFLOPS)"
    ),
    "fp8": f"{H100}: FP8 1,979 vs FP16/BF16 989.5 TFLOPS, throughput x2: factor 0.5",
    "int8": (
        f"{A100}: INT8 624 TOPS vs FP16/BF16 312 TFLOPS (H100 SXM: 1,979 vs 989.5), "
        "throughput x2: factor 0.5"
    ),
    "int4": f"{A100}: INT4 1,248 TOPS vs FP16/BF16 312 TFLOPS, throughput x4: factor 0.25",
    "mixed": (
        "llem's own midpoint of 16-bit (1.0) and int8 (0.5) for int8 matmuls with 16-bit "
        "outlier columns (LLM.int8); no datasheet figure"
    ),
}
SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
BITS = {"fp32": 32, "tf32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}

# quantization -> (weights, compute or None for the activation dtype, method, note)
QUANTIZATION = {
    "torchao-int8-weight": (
        "int8",
        None,
        "torchao Int8WeightOnlyConfig",
        "weight-only int8: weights are dequantised before the matmul, so FLOPs count at the "
        "activation precision",
    ),
    "bnb-8bit": (
        "int8",
        "mixed",
        "bitsandbytes LLM.int8",
        "LLM.int8: int8 matmuls with fp16 outlier columns: counted as mixed precision",
    ),
    "bnb-4bit": (
        "int4",
        None,
        "bitsandbytes NF4",
        "4-bit weights are dequantised before the matmul, so FLOPs count at the activation "
        "precision",
    ),
}
# vLLM quantization methods: weight bits, compute precision (None: activation dtype).
VLLM_QUANTIZATION = {
    "fp8": ("fp8", "fp8"),
    "awq": ("int4", None),
    "gptq": ("int4", None),
    "awq_marlin": ("int4", None),
    "gptq_marlin": ("int4", None),
    "bitsandbytes": ("int4", None),
}

# TensorRT-LLM pre-quantised (ModelOpt) checkpoints:
# tensorrt.quantization -> (weights, compute or None for the activation dtype, method, note)
TENSORRT_QUANTIZATION = {
    "fp8": (
        "fp8",
        "fp8",
        "TensorRT-LLM ModelOpt FP8",
        "FP8 weights and activations: the matmuls run in FP8, counted at the fp8 factor",
    ),
    "int4_awq": (
        "int4",
        None,
        "TensorRT-LLM ModelOpt INT4 AWQ (W4A16)",
        "W4A16: 4-bit weights meet activations of the run's dtype in mixed-input GEMMs, so "
        "FLOPs count at the activation precision",
    ),
}


def precision_for(
    dtype: str,
    quantization: str,
    vllm_quantization: str | None,
    tensorrt_quantization: str | None = None,
) -> PrecisionMetadata:
    """Describe the precision of a run from its dtype and quantisation settings."""
    activations = SHORT[dtype]
    if quantization != "none":
        weights, compute, method, note = QUANTIZATION[quantization]
        compute = compute or activations
        notes = [note]
    elif tensorrt_quantization:
        weights, compute, method, note = TENSORRT_QUANTIZATION[tensorrt_quantization]
        compute = compute or activations
        notes = [note]
    elif vllm_quantization:
        weights, compute_or_none = VLLM_QUANTIZATION.get(vllm_quantization, ("mixed", None))
        compute = compute_or_none or activations
        method = f"vllm {vllm_quantization}"
        notes = (
            []
            if vllm_quantization in VLLM_QUANTIZATION
            else [f"vLLM method {vllm_quantization!r} is not in llem's table: weights marked mixed"]
        )
    else:
        weights, compute, method, notes = activations, activations, "none", []
    return PrecisionMetadata(
        weights=weights,
        activations=activations,
        compute=compute,
        quantization_method=method,
        weight_bits=BITS.get(weights),
        precision_factor=PRECISION_FACTORS[compute],
        precision_factor_basis="convention",
        precision_factor_source=PRECISION_FACTOR_SOURCES[compute],
        notes=notes,
    )
