from dataclasses import dataclass, field

import pytest

from unimodal.config import ConfigError, from_dict, load_config, to_dict, to_toml


@dataclass
class Inner:
    lr: float = 1e-3
    name: str = "x"
    scales: tuple[int, ...] = (4, 8, 16)
    path: str | None = None
    flag: bool = False

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class Root:
    inner: Inner = field(default_factory=Inner)
    steps: int = 10


def test_defaults_and_overrides():
    cfg = load_config(Root, ["--steps=5", "--inner.lr", "0.5", "--inner.scales=[4, 8]"])
    assert cfg.steps == 5 and cfg.inner.lr == 0.5 and cfg.inner.scales == (4, 8)
    cfg = load_config(Root, ["--inner.name=123", "--inner.path=runs/a.b", "--inner.flag=true"])
    assert cfg.inner.name == "123" and cfg.inner.path == "runs/a.b" and cfg.inner.flag is True
    assert isinstance(load_config(Root, ["--inner.lr=2"]).inner.lr, float)


def test_toml_file_and_round_trip(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text("steps = 3\n[inner]\nlr = 0.25\nname = 'y'\n")
    cfg = load_config(Root, ["--config", str(f), "--steps=4"])
    assert (cfg.steps, cfg.inner.lr, cfg.inner.name) == (4, 0.25, "y")
    assert from_dict(Root, to_dict(cfg)) == cfg
    g = tmp_path / "again.toml"
    g.write_text(to_toml(cfg))
    assert load_config(Root, ["--config", str(g)]) == cfg


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--inner.lrr=1"], "inner.lrr"),
        (["--bogus=1"], "bogus"),
        (["--steps=1.5"], "steps"),
        (["--steps=abc"], "steps"),
        (["--inner.flag=3"], "inner.flag"),
        (["--inner.scales=[4, 'a']"], "inner.scales[1]"),
        (["--inner.lr=-1"], "lr must be positive"),
        (["--config", "/nonexistent.toml"], "nonexistent"),
        (["steps=3"], "unexpected argument"),
    ],
)
def test_errors_name_the_key(argv, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        load_config(Root, argv)


@dataclass
class WithSectionDefaults:
    inner: Inner = field(default_factory=lambda: Inner(lr=0.5, name="custom"))


def test_override_keeps_the_sections_own_defaults():
    cfg = load_config(WithSectionDefaults, ["--inner.flag=true"])
    assert cfg.inner.lr == 0.5 and cfg.inner.name == "custom" and cfg.inner.flag is True


@dataclass
class Outer:
    mid: WithSectionDefaults = field(
        default_factory=lambda: WithSectionDefaults(Inner(lr=0.25, name="deep"))
    )


def test_nested_section_defaults_survive_deep_overrides():
    cfg = load_config(Outer, ["--mid.inner.flag=true"])
    assert (cfg.mid.inner.lr, cfg.mid.inner.name, cfg.mid.inner.flag) == (0.25, "deep", True)


def test_section_presets_apply_under_the_tomls_own_keys(tmp_path):
    from unimodal.train.gen_config import GenTrainConfig

    toml = tmp_path / "run.toml"
    toml.write_text('[gen.decoder]\npreset = "sana_pixel_small"\nnum_layers = 6\n')
    cfg = load_config(GenTrainConfig, ["--config", str(toml), "--gen.connector.preset=small"])
    d, c = cfg.gen.decoder, cfg.gen.connector
    assert (d.num_layers, d.cond_dim, d.sample_size, d.pooled_cond) == (6, 384, 64, True)
    assert (c.depth, c.width, c.heads) == (4, 384, 6)
    assert "preset" not in to_toml(cfg).split("[gen.decoder]")[1].split("[")[0]  # spelled out
    with pytest.raises(ConfigError, match=r"gen.decoder.preset: unknown preset 'huge' \(one of"):
        load_config(GenTrainConfig, ["--gen.decoder.preset=huge"])


@dataclass
class WithTable:
    weights: dict[str, float] = field(default_factory=lambda: {"vqa": 4.0, "code": 0.5})


def test_command_line_values_inside_a_table_are_coerced(tmp_path):
    (tmp_path / "t.toml").write_text("weights = { vqa = 4.0, code = 0.5 }\n")
    base = ["--config", str(tmp_path / "t.toml")]
    cfg = load_config(WithTable, [*base, "--weights.objects=1", "--weights.vqa=2.5"])
    assert cfg.weights == {"vqa": 2.5, "code": 0.5, "objects": 1.0}
    assert all(type(v) is float for v in cfg.weights.values())
    with pytest.raises(ConfigError, match="weights.code"):
        load_config(WithTable, [*base, "--weights.code=many"])
