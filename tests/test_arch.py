import json

import pytest
from pydantic import ValidationError

from mnas.arch import Architecture, BlockSpec
from mnas.errors import ArchitectureError
from mnas.presets import MNASNET_A1, MNASNET_B1, MOBILENET_V2, PRESETS, load_architecture


def test_presets_equal_their_timm_strings():
    assert Architecture.from_timm(MNASNET_A1) == PRESETS["mnasnet-a1"]
    assert Architecture.from_timm(MNASNET_B1) == PRESETS["mnasnet-b1"]
    assert Architecture.from_timm(MOBILENET_V2, act="relu6") == PRESETS["mobilenet-v2"]
    assert Architecture.from_timm(",".join(MNASNET_B1)) == PRESETS["mnasnet-b1"]


def test_timm_export_is_the_reference_strings():
    # B1 and MobileNetV2 strings come back verbatim; A1's block 1 drops the redundant e1
    assert PRESETS["mnasnet-b1"].to_timm() == MNASNET_B1
    assert PRESETS["mobilenet-v2"].to_timm() == MOBILENET_V2
    assert PRESETS["mnasnet-a1"].to_timm()[0] == "ds_r1_k3_s1_c16_noskip"
    assert PRESETS["mnasnet-a1"].to_timm()[1:] == MNASNET_A1[1:]


def test_a1_block_fields():
    a1 = PRESETS["mnasnet-a1"]
    b3 = a1.blocks[2]
    assert (b3.op, b3.kernel, b3.se, b3.skip, b3.filters, b3.layers, b3.stride) == ("mbconv3", 5, 0.25, "identity", 40, 3, 2)
    assert a1.blocks[0].skip == "none" and a1.blocks[0].op == "sepconv"
    assert a1.stem == 32 and a1.head == 1280 and a1.act == "relu"
    assert PRESETS["mobilenet-v2"].act == "relu6"


def test_json_round_trip_and_hash():
    for arch in PRESETS.values():
        again = Architecture.from_json(arch.to_json())
        assert again == arch and hash(again) == hash(arch)
    assert len({Architecture.from_json(a.to_json()) for a in PRESETS.values()}) == len(PRESETS) == 8
    with pytest.raises(ValidationError):
        PRESETS["mnasnet-a1"].blocks[0].kernel = 5  # frozen


def test_pool_skip_round_trips_through_timm():
    arch = Architecture.from_timm("ir_r2_k5_s2_e3_c24_se0.25_poolskip,cn_r1_k3_s1_c32_noskip")
    assert arch.blocks[0].skip == "pool" and arch.blocks[1].skip == "none" and arch.blocks[1].op == "conv"
    assert Architecture.from_timm(arch.to_timm()) == arch


@pytest.mark.parametrize(
    "data, field",
    [
        ({"blocks": [{"op": "mbconv", "kernel": 3, "filters": 16, "layers": 1}]}, "blocks.0.op"),
        ({"blocks": [{"op": "mbconv0.5", "kernel": 3, "filters": 16, "layers": 1}]}, "blocks.0.op"),
        ({"blocks": [{"op": "conv", "kernel": 9, "filters": 16, "layers": 1}]}, "blocks.0.kernel"),
        ({"blocks": [{"op": "conv", "kernel": 3, "se": 1.5, "filters": 16, "layers": 1}]}, "blocks.0.se"),
        ({"blocks": [{"op": "conv", "kernel": 3, "act": "gelu", "filters": 16, "layers": 1}]}, "blocks.0.act"),
        ({"blocks": [{"op": "conv", "kernel": 3, "filters": 16, "layers": 1}], "se_style": "wide"}, "se_style"),
        ({"blocks": [{"op": "conv", "kernel": 3, "skip": "dense", "filters": 16, "layers": 1}]}, "blocks.0.skip"),
        ({"blocks": [{"op": "conv", "kernel": 3, "filters": 0, "layers": 1}]}, "blocks.0.filters"),
        ({"blocks": [{"op": "conv", "kernel": 3, "filters": 16, "layers": 0, "stride": 2}]}, "blocks.0"),
        ({"blocks": [{"op": "conv", "kernel": 3, "filters": 16}]}, "blocks.0.layers"),
        ({"blocks": [], "stem": 32}, "blocks"),
        ({"blocks": [{"op": "conv", "kernel": 3, "filters": 16, "layers": 1}], "head": -1}, "head"),
        ({"blocks": [{"op": "conv", "kernel": 3, "filters": 16, "layers": 1}], "width": 3}, "width"),
    ],
)
def test_bad_json_names_the_field(data, field):
    with pytest.raises(ArchitectureError) as err:
        Architecture.from_json(json.dumps(data))
    assert f"{field}:" in str(err.value)


@pytest.mark.parametrize(
    "text, words",
    [
        ("xx_r1_k3_s1_c16", "block type 'xx'"),
        ("ir_r2_k3_s2_e20_c24", "expansion e20 is outside"),
        ("ir_r2_k3_s2_e6", "missing output channels"),
        ("ir_r2_s2_e6_c24", "missing kernel"),
        ("ir_r2_k3_s2_e6_c24_zz9", "unknown option 'zz9'"),
        ("ir_rX_k3_s2_e6_c24", "layers value 'X'"),
        ("ds_r1_k3_s1_e6_c16", "expansion 1"),
    ],
)
def test_bad_timm_strings_name_the_problem(text, words):
    with pytest.raises(ArchitectureError) as err:
        Architecture.from_timm(text)
    assert words in str(err.value)


def test_load_architecture_sources(tmp_path):
    path = tmp_path / "a1.json"
    path.write_text(PRESETS["mnasnet-a1"].to_json())
    assert load_architecture(str(path)) == PRESETS["mnasnet-a1"]
    assert load_architecture("mnasnet-b1") == PRESETS["mnasnet-b1"]
    assert load_architecture(",".join(MNASNET_A1)) == PRESETS["mnasnet-a1"]
    with pytest.raises(ArchitectureError, match="not found"):
        load_architecture(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        load_architecture(str(tmp_path / "broken.json"))
    with pytest.raises(ArchitectureError, match="not a preset"):
        load_architecture("mnasnet-z9")


def test_blockspec_expansion():
    assert BlockSpec(op="mbconv6", kernel=3, filters=8, layers=1).expansion == 6
    assert BlockSpec(op="mbconv6.0", kernel=3, filters=8, layers=1).op == "mbconv6"  # one spelling
    assert BlockSpec(op="mbconv2.5", kernel=7, filters=8, layers=1).expansion == 2.5
    assert BlockSpec(op="sepconv", kernel=3, filters=8, layers=1).expansion == 1


def test_new_fields_stay_out_of_old_json():
    """Architectures of the first format keep their JSON (and so their experiment keys)."""
    a1 = PRESETS["mnasnet-a1"].to_dict()
    assert set(a1) == {"stem", "blocks", "head", "act"} and all("act" not in b for b in a1["blocks"])
    v3 = PRESETS["mobilenet-v3-large"]
    doc = v3.to_dict()
    assert doc["se_style"] == "expanded" and doc["head_style"] == "efficient" and doc["act"] == "hswish"
    assert [b.get("act") for b in doc["blocks"]][:5] == ["relu", "relu", "relu", "relu", None]
    # a block act equal to the network's is the same architecture as one left out
    same = Architecture.from_dict({**doc, "blocks": [{**b, "act": b.get("act", "hswish")} for b in doc["blocks"]]})
    assert same == v3 and same.to_dict() == doc


@pytest.mark.parametrize("name", ["mobilenet-v3-large", "mobilenet-v3-small", "efficientnet-b0", "spnasnet-100", "fbnet-c"])
def test_new_presets_round_trip_through_timm_strings(name):
    arch = PRESETS[name]
    again = Architecture.from_timm(arch.to_timm(), stem=arch.stem, head=arch.head, act=arch.act, se_style=arch.se_style,
                                   head_style=arch.head_style)
    assert again == arch


def test_an_architectures_key_is_its_canonical_json_hashed_and_the_same_for_the_same_network():
    import hashlib

    a = PRESETS["mnasnet-a1"]
    again = Architecture.from_timm(a.to_timm(), stem=a.stem, head=a.head, act=a.act)
    assert again.canonical() == a.canonical() and again.key() == a.key()
    assert a.key() == hashlib.sha256(json.dumps(a.to_dict(), sort_keys=True).encode()).hexdigest()[:20]  # stores recorded before
    assert PRESETS["mobilenet-v2"].key() != a.key() and len(a.key()) == 20


def test_a_block_of_zero_layers_is_the_same_network_whatever_its_inert_choices():
    """The reproduction's multi-trial search handed over two 'distinct' top architectures that
    differed only in the skip of an empty block, and stage 2 trained the same network twice."""
    a = PRESETS["mnasnet-a1"].to_dict()
    empty = {**a["blocks"][1], "layers": 0, "stride": 1}
    one = Architecture.from_dict({**a, "blocks": [a["blocks"][0], {**empty, "skip": "identity"}, *a["blocks"][2:]]})
    other = Architecture.from_dict({**a, "blocks": [a["blocks"][0], {**empty, "skip": "pool", "kernel": 5, "filters": 40}, *a["blocks"][2:]]})
    assert one != other and one.key() == other.key() and one.to_timm() == other.to_timm()
    widened = Architecture.from_dict({**a, "blocks": [a["blocks"][0], {**empty, "layers": 1}, *a["blocks"][2:]]})
    assert widened.key() != one.key()
