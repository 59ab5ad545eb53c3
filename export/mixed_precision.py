"""Mixed precision for strongly typed TensorRT (11.x): convolutions in fp16/bf16, the rest fp32.

TensorRT 11 takes precision from the ONNX types. This transform casts the inputs of every
Conv and ConvTranspose (activations by a Cast node, weights and biases in place) to the
reduced type and casts their outputs back to float32, so normalisation, reductions,
activations, the input compression and the residual shortcut all stay in fp32: the
reduced-precision error is confined to the arithmetic-heavy layers.
"""

from __future__ import annotations

import numpy as np

from nmrladder.runtime.errors import InputError

REDUCED_OPS = ("Conv", "ConvTranspose")
BF16_MIN_OPSET = 22


def to_mixed_precision(onnx_model, precision: str):
    """A copy of ``onnx_model`` with REDUCED_OPS computed in ``precision`` ("fp16" or "bf16")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    types = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
    if precision not in types:
        raise InputError(f"mixed precision: use 'fp16' or 'bf16', not {precision!r}")
    low = types[precision]
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    converted: set[str] = set()
    nodes = []
    for node in graph.node:
        if node.op_type not in REDUCED_OPS:
            nodes.append(node)
            continue
        for position, name in enumerate(node.input):
            if not name:
                continue
            if name in initializers:
                if name not in converted:
                    _convert_initializer(initializers[name], low, numpy_helper)
                    converted.add(name)
                continue
            cast_name = f"{name}__to_{precision}__{node.name}"
            nodes.append(
                helper.make_node("Cast", [name], [cast_name], to=low, name=f"{cast_name}_cast")
            )
            node.input[position] = cast_name
        low_output = f"{node.output[0]}__{precision}"
        original_output = node.output[0]
        node.output[0] = low_output
        nodes.append(node)
        nodes.append(
            helper.make_node(
                "Cast",
                [low_output],
                [original_output],
                to=TensorProto.FLOAT,
                name=f"{low_output}_to_fp32",
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)
    if precision == "bf16":
        # Conv accepts bfloat16 from opset 22; the float32 semantics of every op this graph
        # uses (Conv, ConvTranspose, InstanceNormalization, Reshape, Erf, ...) are unchanged.
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, BF16_MIN_OPSET)
    # Shapes inferred for the float32 graph no longer hold for the cast tensors.
    del graph.value_info[:]
    return model


def _convert_initializer(initializer, low_type, numpy_helper) -> None:
    from onnx import TensorProto

    values = numpy_helper.to_array(initializer).astype(np.float32)
    if low_type == TensorProto.FLOAT16:
        replacement = numpy_helper.from_array(values.astype(np.float16), initializer.name)
    else:  # bfloat16: the high half of the float32 bits, rounded to nearest even
        bits = values.view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        replacement = TensorProto()
        replacement.name = initializer.name
        replacement.data_type = TensorProto.BFLOAT16
        replacement.dims.extend(values.shape)
        replacement.raw_data = rounded.tobytes()
    initializer.CopyFrom(replacement)
