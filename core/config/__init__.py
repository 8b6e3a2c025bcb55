"""Frozen settings for every stage: what they are (spec), the rules they meet (checks), their
JSON form and settings hash (codec, values) and the presets. Standard library only: the app reads
it without torch. Every refusal is a `ConfigError` naming the field and what was expected."""

from core.config.checks import (DROP_RULES, STAGES, ConfigError, block_pairs, check_blocks, depth_warning,
                                teacher_mismatch, valid_blocks, validate)
from core.config.codec import from_dict, settings_hash, to_dict
from core.config.presets import PRESETS, apply_preset
from core.config.spec import (DEFAULT_PROMPT, AnalysisConfig, BackboneConfig, DataConfig, DistillConfig,
                              DropConfig, RecConfig, RunSpec, SASRecConfig, TrainConfig, eval_batch)

__all__ = ["DROP_RULES", "STAGES", "ConfigError", "block_pairs", "check_blocks", "depth_warning", "valid_blocks", "validate",
           "from_dict", "settings_hash", "teacher_mismatch", "to_dict", "PRESETS", "apply_preset", "DEFAULT_PROMPT", "AnalysisConfig",
           "BackboneConfig", "DataConfig", "DistillConfig", "DropConfig", "RecConfig", "RunSpec", "SASRecConfig",
           "TrainConfig", "eval_batch"]
