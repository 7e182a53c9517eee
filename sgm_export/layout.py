"""Every folder and file name that sgm-export writes, defined once.

The names of the ONNX graphs, their inputs and outputs are in `runtime/layout.py` (the runtime
reads them without the rest of the package); `modeling_sgm.py`, which ships inside checkpoints and
cannot import this package, repeats the few it needs.

A run's output folder (`sgm-export run`):

    OUT/collect/continuations.jsonl, collect.json    the model's own continuations (`collect:`)
    OUT/scores/scores.safetensors, scores.json       the neuron scores
    OUT/glasses.safetensors                          the glasses
    OUT/model/, model-folded/, model-onnx/           the exports (CHECKPOINT_DIRS)
    OUT/eval/report.json, report.md, ...             the evaluation
    OUT/summary.json                                 what the run did

An export folder holds, besides the model's own files, `sgm_export.json` (the manifest),
`README.md` (the card), its glasses (`sgm_glasses.safetensors` and `modeling_sgm.py` in a module
export, `glasses.safetensors` otherwise), and, when added later, `onnx/` and `eval/`.
"""

# a run's output folder
COLLECT_DIR = "collect"
SCORES_DIR = "scores"
EVAL_DIR = "eval"
RUN_SUMMARY_FILE = "summary.json"
CHECKPOINT_DIRS = {"module": "model", "folded": "model-folded", "onnx": "model-onnx"}

# a collect folder
ROWS_FILE = "continuations.jsonl"
COLLECT_SUMMARY_FILE = "collect.json"

# a scores folder
SCORES_FILE = "scores.safetensors"
SCORES_SUMMARY_FILE = "scores.json"

# the glasses: a run's, and those beside the weights of folded and ONNX exports
GLASSES_FILE = "glasses.safetensors"

# an export folder
MANIFEST_FILE = "sgm_export.json"
CARD_FILE = "README.md"
SCALES_FILE = "sgm_glasses.safetensors"  # a module export's glasses, keyed by module name
MODELING_FILE = "modeling_sgm.py"
ONNX_DIR = "onnx"

# an evaluation report folder (and the `eval/` an export carries)
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
GENERATIONS_FILE = "generations.jsonl"
MODALITY_PLOT = "harmful_by_modality.png"  # with image prompts: rates per modality and visual trigger

# a sweep folder
SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"
TRADEOFF_PLOT = "tradeoff.png"
