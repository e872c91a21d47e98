"""Typed configs: frozen dataclasses with a strict JSON round trip, and the model size presets as one table.

Every field is checked when a config is built (`check_fields`, first thing in each ``__post_init__``): its type
from the annotation (an ``int`` takes neither 2.5 nor "abc", a ``bool`` only true/false, a ``float`` only finite
numbers) and the values it allows, declared beside it with `rule`. A bad value is one line naming the field, the
value and what is allowed.

The package, by concept (every name is imported from here, ``from polymodal.config import ModelConfig``):

- `fields`: `rule`, `check_fields` and `ConfigError`; `json_number` / `json_flag` for official JSON configs;
- `sections`: one dataclass per section (`ModelConfig` with `MODEL_PRESETS`, `MaskingConfig`, `OptimConfig`,
  `DataConfig`, `TrainConfig`, `LoRAConfig`, `FinetuneConfig`);
- `experiment`: `ExperimentConfig`, the `OBJECTIVES` table, the JSON round trip and ``key=value`` overrides.
"""

from .experiment import (
    OBJECTIVES,
    ExperimentConfig,
    ObjectiveSpec,
    apply_overrides,
    from_dict,
    import_path,
    load_json,
    objective_spec,
    save_json,
    to_dict,
)
from .fields import ConfigError, Rule, check_fields, json_flag, json_number, rule
from .sections import (
    DEFAULT_SIZE,
    FINETUNE_GROUPS,
    MODEL_PRESETS,
    DataConfig,
    FinetuneConfig,
    LoRAConfig,
    MaskingConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    finetune_groups,
)

__all__ = [
    "DEFAULT_SIZE", "FINETUNE_GROUPS", "MODEL_PRESETS", "OBJECTIVES", "ConfigError", "DataConfig", "ExperimentConfig",
    "FinetuneConfig", "LoRAConfig", "MaskingConfig", "ModelConfig", "ObjectiveSpec", "OptimConfig", "Rule",
    "TrainConfig", "apply_overrides", "check_fields", "finetune_groups", "from_dict", "import_path", "json_flag",
    "json_number", "load_json", "objective_spec", "rule", "save_json", "to_dict",
]
