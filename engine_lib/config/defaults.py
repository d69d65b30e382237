"""The tree of default config values.

Every key carries a comment on the line(s) above it: ``tools/`` and the docs read these
comments, and a test fails when a key has none. Projects add their own keys with an
``add_<project>_config(cfg)`` function instead of editing this file.
"""

from .config import CfgNode as CN

__all__ = ["_C"]

_C = CN()

# Version of the config format; bumped when keys are renamed so old files can be upgraded.
_C.VERSION = 1

# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
_C.MODEL = CN()
# Device the model is trained and evaluated on: "cpu", "cuda" or "cuda:N".
_C.MODEL.DEVICE = "cpu"
# Name of the meta-architecture in META_ARCH_REGISTRY that wraps backbone and heads.
_C.MODEL.META_ARCHITECTURE = "ImageClassifier"
# Path of a checkpoint to initialise the whole model from ("" = random initialisation).
_C.MODEL.WEIGHTS = ""
# Load MODEL.WEIGHTS, resumed checkpoints and the teacher's KD.MODEL_WEIGHTS with full pickle
# instead of torch.load(weights_only=True). Unpickling can run arbitrary code: only for trusted
# files.
_C.MODEL.WEIGHTS_ALLOW_PICKLE = False
# Download MODEL.WEIGHTS, KD.MODEL_WEIGHTS and MODEL.BACKBONE.PRETRAIN_PATH given as
# http(s):// URLs. Off: a URL is refused with an error naming this key (see docs/security.md).
_C.MODEL.ALLOW_REMOTE_WEIGHTS = False
# Per-channel mean subtracted from input pixels (in the 0-255 range of INPUT.FORMAT).
_C.MODEL.PIXEL_MEAN = [0.0, 0.0, 0.0]
# Per-channel standard deviation input pixels are divided by (same order as PIXEL_MEAN).
_C.MODEL.PIXEL_STD = [255.0, 255.0, 255.0]

_C.MODEL.BACKBONE = CN()
# Name of the backbone in BACKBONE_REGISTRY (e.g. "SmallCNN", "ResNet").
_C.MODEL.BACKBONE.NAME = "SmallCNN"
# Depth of a ResNet backbone: 18, 34 or 50.
_C.MODEL.BACKBONE.DEPTH = 18
# Width (channels of the first stage) of the small CNN backbone.
_C.MODEL.BACKBONE.WIDTH = 32
# Normalization layer of the backbone: "BN", "GN", "SyncBN" or "" for none.
_C.MODEL.BACKBONE.NORM = "BN"
# Local file with backbone weights to load before training ("" = none; never downloaded).
_C.MODEL.BACKBONE.PRETRAIN_PATH = ""
# Number of input channels the backbone expects (1 for grayscale, 3 for RGB).
_C.MODEL.BACKBONE.IN_CHANNELS = 3

_C.MODEL.HEADS = CN()
# Name of the head in HEADS_REGISTRY ("LinearHead" is built in; projects register their own,
# e.g. projects/MetricLearning's "EmbeddingHead").
_C.MODEL.HEADS.NAME = "LinearHead"
# Number of classes the classification head predicts.
_C.MODEL.HEADS.NUM_CLASSES = 10
# Global pooling before the head: "avg" or "max".
_C.MODEL.HEADS.POOL = "avg"
# Dropout probability applied before the final linear layer.
_C.MODEL.HEADS.DROPOUT = 0.0
# Label smoothing of the cross-entropy loss (0 = none).
_C.MODEL.HEADS.LABEL_SMOOTHING = 0.0
# Dimension of the embedding of a head that produces one (read by projects/MetricLearning's
# EmbeddingHead; LinearHead ignores it). 0 = the backbone's output channels.
_C.MODEL.HEADS.EMBEDDING_DIM = 0

_C.MODEL.EMA = CN()
# Keep an exponential moving average of the weights during training (the EMA hook).
_C.MODEL.EMA.ENABLED = False
# Decay of the moving average (closer to 1 = slower, smoother average).
_C.MODEL.EMA.DECAY = 0.999
# Evaluate with the EMA weights instead of the raw weights.
_C.MODEL.EMA.EVAL_WITH_EMA = True

# Name prefixes of modules frozen at the start of training (e.g. ["backbone"]); BatchNorm
# layers inside them also stay in eval mode while frozen.
_C.MODEL.FREEZE_LAYERS = []
# Number of iterations the FREEZE_LAYERS modules stay frozen (0 = not frozen).
_C.MODEL.FREEZE_ITERS = 0

_C.MODEL.DDP = CN()
# Let DDP tolerate parameters that get no gradient in an iteration (slower; only if needed).
_C.MODEL.DDP.FIND_UNUSED_PARAMETERS = False
# Compress gradients to fp16 for the all-reduce (saves bandwidth across machines).
_C.MODEL.DDP.FP16_COMPRESSION = False
# Compile the model's forward with torch.compile (nn.Module.compile: in place, so
# checkpoints keep their parameter names and load without compile), for training and
# evaluation. The first iterations are slower while it compiles.
_C.MODEL.COMPILE = False
# torch.compile mode: "default", "reduce-overhead", "max-autotune" or
# "max-autotune-no-cudagraphs".
_C.MODEL.COMPILE_MODE = "default"

# ---------------------------------------------------------------------------------------
# Data parallelism (engine_lib.engine.parallel; see docs/large_models.md)
# ---------------------------------------------------------------------------------------
_C.PARALLEL = CN()
# "ddp": every rank holds the whole model and optimizer (DistributedDataParallel; MODEL.DDP.*
# apply). "fsdp": FSDP2 shards parameters, gradients and optimizer state over all ranks.
# "hsdp": replicate across machines, shard within each machine (a 2-D device mesh).
_C.PARALLEL.STRATEGY = "ddp"
# Activation checkpointing: class names of modules whose forward is recomputed in backward
# (less memory, more compute), e.g. ("BasicBlock",). Works with every strategy.
_C.PARALLEL.ACTIVATION_CHECKPOINTING = ()

_C.PARALLEL.FSDP = CN()
# Class names of the modules sharded as units (each gathers its parameters on its own), e.g.
# ("Bottleneck", "Block"). Empty: the backbone's blocks (the children of each outermost
# nn.Sequential / nn.ModuleList in model.backbone: SmallCNN's stages, ResNet's blocks).
_C.PARALLEL.FSDP.WRAP = ()
# Free the gathered parameters of each unit after its forward and gather them again in
# backward (ZeRO-3, least memory); False keeps them until backward (ZeRO-2, less traffic).
_C.PARALLEL.FSDP.RESHARD_AFTER_FORWARD = True
# Dtype of the gathered parameters in forward/backward (FSDP2 MixedPrecisionPolicy):
# "" (the parameters' own, float32), "bfloat16", "float16" or "float32". The sharded
# parameters and the optimizer stay float32.
_C.PARALLEL.FSDP.PARAM_DTYPE = ""
# Dtype of the gradient reduce-scatter: "" (PARAM_DTYPE's), "float32", "bfloat16", "float16".
_C.PARALLEL.FSDP.REDUCE_DTYPE = ""
# Keep sharded parameters, gradients and optimizer state in host memory (CPUOffloadPolicy;
# the optimizer steps on CPU). Only with MODEL.DEVICE cuda.
_C.PARALLEL.FSDP.CPU_OFFLOAD = False

# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------
_C.INPUT = CN()
# Channel order of images given to the model: "RGB", "BGR" or "L" (grayscale).
_C.INPUT.FORMAT = "RGB"
# (height, width) of training images: the random resized crop (INPUT.CROP) or, without it,
# a plain resize produces this size; flip, colour jitter and erasing follow.
_C.INPUT.SIZE_TRAIN = [32, 32]
# Test images are resized to this (height, width).
_C.INPUT.SIZE_TEST = [32, 32]

_C.INPUT.FLIP = CN()
# Probability of a random horizontal flip during training (0 disables it).
_C.INPUT.FLIP.PROB = 0.0

_C.INPUT.CROP = CN()
# Apply a random resized crop during training.
_C.INPUT.CROP.ENABLED = False
# Range of the crop area, as a fraction of the image area.
_C.INPUT.CROP.SCALE = [0.8, 1.0]
# Range of the crop aspect ratio (width / height).
_C.INPUT.CROP.RATIO = [0.75, 1.3333]

_C.INPUT.COLOR_JITTER = CN()
# Apply random colour jitter during training.
_C.INPUT.COLOR_JITTER.ENABLED = False
# Maximum relative change of brightness (a factor drawn in [1 - x, 1 + x]).
_C.INPUT.COLOR_JITTER.BRIGHTNESS = 0.2
# Maximum relative change of contrast.
_C.INPUT.COLOR_JITTER.CONTRAST = 0.2
# Maximum relative change of saturation.
_C.INPUT.COLOR_JITTER.SATURATION = 0.2
# Maximum change of hue (at most 0.5).
_C.INPUT.COLOR_JITTER.HUE = 0.0

_C.INPUT.RANDOM_ERASING = CN()
# Apply random erasing (cutout) after the other augmentations during training.
_C.INPUT.RANDOM_ERASING.ENABLED = False
# Probability that an image is erased.
_C.INPUT.RANDOM_ERASING.PROB = 0.5

# ---------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Names of the data sets (registered in DatasetCatalog) to train on.
_C.DATASETS.TRAIN = ("digits_train",)
# Names of the data sets to evaluate on.
_C.DATASETS.TEST = ("digits_test",)
# Repeat factor of each DATASETS.TRAIN data set, in the same order (() = 1.0 each): 3 = three
# times per epoch, 0.5 = half its samples per epoch (fractions rounded at random per epoch).
_C.DATASETS.TRAIN_REPEAT = ()

# ---------------------------------------------------------------------------------------
# Data loader
# ---------------------------------------------------------------------------------------
_C.DATALOADER = CN()
# Number of data-loading worker processes per training process (0 = load in the main process).
_C.DATALOADER.NUM_WORKERS = 0
# Sampler of the training set: "TrainingSampler", "RepeatFactorTrainingSampler" (alias
# "ClassBalancedSampler": rare labels repeated, see REPEAT_THRESHOLD) or "IdentitySampler".
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
# Repeat threshold of RepeatFactorTrainingSampler (classes rarer than this are repeated).
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
# Number of instances per identity in a batch for IdentitySampler (the K of P x K).
_C.DATALOADER.NUM_INSTANCE = 4
# Count an epoch as N // batch iterations (True) or ceil(N / batch) (False), batch being
# SOLVER.IMS_PER_BATCH * SOLVER.GRAD_ACCUM_STEPS (see docs/epochs.md). Also drops an incomplete
# last batch of a finite training sampler; the built-in samplers are infinite.
_C.DATALOADER.DROP_LAST = True
# Copy the next batch to the GPU on a side stream while the current step runs (one batch drawn
# ahead; resume stays exact). Only with a CUDA MODEL.DEVICE; a CPU run ignores it.
_C.DATALOADER.PREFETCH_TO_DEVICE = True

# ---------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------
_C.SOLVER = CN()
# Optimizer: "SGD", "Adam" or "AdamW".
_C.SOLVER.OPTIMIZER = "SGD"
# Base learning rate (for the global batch SOLVER.IMS_PER_BATCH).
_C.SOLVER.BASE_LR = 0.01
# Momentum of SGD.
_C.SOLVER.MOMENTUM = 0.9
# Use Nesterov momentum with SGD.
_C.SOLVER.NESTEROV = False
# (beta1, beta2) of Adam and AdamW.
_C.SOLVER.BETAS = [0.9, 0.999]
# L2 weight decay of ordinary parameters.
_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of normalization-layer parameters (BN/GN/LN weights and biases).
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Weight decay of biases (None = same as WEIGHT_DECAY).
_C.SOLVER.WEIGHT_DECAY_BIAS = None
# The learning rate of biases is BASE_LR * BIAS_LR_FACTOR.
_C.SOLVER.BIAS_LR_FACTOR = 1.0
# Per-module LR factors as (module path, factor) pairs, e.g. [["head", 10.0]] for the
# built-in classifier's head; the longest matching prefix wins, and a prefix matching no
# parameter is an error.
_C.SOLVER.LR_FACTORS = []
# Schedule: "WarmupMultiStepLR", "WarmupCosineLR" or "WarmupConstantLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
# Iterations at which a multi-step schedule multiplies the LR by GAMMA; each entry may be
# given in epochs instead, e.g. ("30ep", "40ep") (see docs/epochs.md).
_C.SOLVER.STEPS = (3000,)
# Factor applied at each of SOLVER.STEPS.
_C.SOLVER.GAMMA = 0.1
# Final LR of the cosine schedule, as a fraction of BASE_LR.
_C.SOLVER.BASE_LR_END = 0.0
# Warmup starts at BASE_LR * WARMUP_FACTOR.
_C.SOLVER.WARMUP_FACTOR = 0.001
# Length of the warmup in iterations, or in epochs as "<x>ep", e.g. "1ep" (0 = no warmup).
_C.SOLVER.WARMUP_ITERS = 100
# Warmup shape: "linear" or "constant".
_C.SOLVER.WARMUP_METHOD = "linear"
# Total number of training iterations (optimizer steps). Set exactly one of MAX_ITER and
# MAX_EPOCH: -1 = not set (a file or command line setting MAX_EPOCH unsets MAX_ITER).
_C.SOLVER.MAX_ITER = -1
# Length of training in epochs, instead of SOLVER.MAX_ITER (0 = not set); converted to
# iterations with SOLVER.ITERS_PER_EPOCH (see docs/epochs.md).
_C.SOLVER.MAX_EPOCH = 0
# Iterations per epoch (0 = derived: training set size // (IMS_PER_BATCH * GRAD_ACCUM_STEPS),
# rounded up when DATALOADER.DROP_LAST is False, at least 1). The trainer fills it in.
_C.SOLVER.ITERS_PER_EPOCH = 0
# fastreid's delay: WarmupCosineLR keeps the LR constant for this many epochs from the start
# (a shorter warmup included) before the cosine decay begins (0 = decay from the start).
_C.SOLVER.DELAY_EPOCHS = 0
# WarmupStepWithFixedGammaLR (detectron2's): the LR is multiplied by SOLVER.GAMMA this many
# times, at equal intervals over training.
_C.SOLVER.NUM_DECAYS = 3
# Whether the schedule after the warmup runs its whole course in the iterations left after
# the warmup (True) or is evaluated at the global iteration, as if the warmup replaced its
# beginning (False), as detectron2's key of this name.
_C.SOLVER.RESCALE_INTERVAL = False
# Global batch size over all processes (each process takes IMS_PER_BATCH / world size).
_C.SOLVER.IMS_PER_BATCH = 64
# Save a checkpoint every this many iterations, or epochs as "<x>ep", e.g. "5ep".
_C.SOLVER.CHECKPOINT_PERIOD = 1000
# Keep at most this many periodic checkpoints on disk (0 or less = keep all).
_C.SOLVER.MAX_TO_KEEP = 3
# Checkpoint format: "torch" (one file model_<iter>.pth, written by the main process), "dcp"
# (a sharded torch.distributed.checkpoint directory model_<iter>/, each rank writing its
# shard; resumable on another number of processes), or "auto": "dcp" when PARALLEL.STRATEGY
# is fsdp or hsdp, else "torch". Either format loads as MODEL.WEIGHTS. See
# docs/checkpoints_sharded.md.
_C.SOLVER.CHECKPOINT_FORMAT = "auto"
# With the "dcp" format: save asynchronously (the loop waits only for a CPU copy of the
# state; at most one save in flight; its collectives on a separate gloo group). last_checkpoint
# moves when the save is complete.
_C.SOLVER.CHECKPOINT_ASYNC = False
# Number of micro-batches whose gradients are accumulated before each optimizer step; each
# micro-batch has IMS_PER_BATCH images, so one step sees IMS_PER_BATCH * GRAD_ACCUM_STEPS.
_C.SOLVER.GRAD_ACCUM_STEPS = 1
# The reference world size BASE_LR, IMS_PER_BATCH and MAX_ITER were tuned for
# (0 = never rescale them in DefaultTrainer.auto_scale_workers).
_C.SOLVER.REFERENCE_WORLD_SIZE = 0

# Write metrics (console, metrics.json, TensorBoard) every this many iterations; losses are
# copied from the device to the host only then.
_C.SOLVER.LOG_PERIOD = 20
# Signals that preempt training: every process finishes its step, they agree on the iteration
# (checked every LOG_PERIOD iterations with several processes), save a checkpoint and exit with
# code 75 (engine_lib.engine.PREEMPTED_EXIT_CODE); --resume continues exactly.
_C.SOLVER.PREEMPT_SIGNALS = ["SIGTERM", "SIGUSR1"]

_C.SOLVER.BEST_CHECKPOINT = CN()
# Save model_best.pth whenever the metric below improves after an evaluation.
_C.SOLVER.BEST_CHECKPOINT.ENABLED = False
# Metric to track, as "task/metric" in the flattened evaluation results.
_C.SOLVER.BEST_CHECKPOINT.METRIC = "classification/top1"
# "max" if a larger metric is better, "min" otherwise.
_C.SOLVER.BEST_CHECKPOINT.MODE = "max"

_C.SOLVER.EARLY_STOP = CN()
# End training when the metric below has not improved for PATIENCE evaluations (see
# docs/hooks.md): model_final.pth is saved then, and the best model as model_best.pth.
_C.SOLVER.EARLY_STOP.ENABLED = False
# Metric to watch, as "task/metric" in the flattened evaluation results.
_C.SOLVER.EARLY_STOP.METRIC = "classification/top1"
# "max" if a larger metric is better, "min" otherwise.
_C.SOLVER.EARLY_STOP.MODE = "max"
# Number of evaluations (every TEST.EVAL_PERIOD) without improvement before stopping.
_C.SOLVER.EARLY_STOP.PATIENCE = 3
# An improvement smaller than this does not count as one.
_C.SOLVER.EARLY_STOP.MIN_DELTA = 0.0

_C.SOLVER.CLIP_GRADIENTS = CN()
# Clip gradients before each optimizer step.
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# "norm" clips the global norm of all gradients; "value" clips each element.
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
# Maximum gradient norm (for "norm") or absolute value (for "value").
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
# Type of the norm for "norm" clipping (2.0 = L2). The max norm is .inf in a YAML file
# (1e999 on the command line); the string "inf" is rejected.
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0

_C.SOLVER.AMP = CN()
# Train with automatic mixed precision.
_C.SOLVER.AMP.ENABLED = False
# Autocast dtype: "float16" (uses a grad scaler) or "bfloat16" (no scaler; works on CPU).
_C.SOLVER.AMP.DTYPE = "float16"

# ---------------------------------------------------------------------------------------
# Test
# ---------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate every this many iterations, or epochs as "<x>ep", e.g. "1ep" (0 = only after
# training).
_C.TEST.EVAL_PERIOD = 0
# Batch size per process at inference.
_C.TEST.IMS_PER_BATCH = 64
# Expected results as [[task, metric, value, tolerance], ...], checked after the final
# evaluation: a miss fails the run (exit code 2).
_C.TEST.EXPECTED_RESULTS = []
# The evaluator of each test set, by its name in engine_lib.evaluation.EVALUATOR_REGISTRY
# (built in: ClassificationEvaluator); DefaultTrainer.build_evaluator may still be overridden.
_C.TEST.EVALUATOR = "ClassificationEvaluator"

_C.TEST.PRECISE_BN = CN()
# Recompute BatchNorm statistics on training data before each evaluation.
_C.TEST.PRECISE_BN.ENABLED = False
# Number of training batches used to recompute the statistics.
_C.TEST.PRECISE_BN.NUM_ITER = 200

# ---------------------------------------------------------------------------------------
# Knowledge distillation (engine_lib.distillation; DistillationTrainer, which tools/train_net.py
# picks when KD.ENABLED)
# ---------------------------------------------------------------------------------------
_C.KD = CN()
# Train the model (the student) against a frozen teacher's softened predictions.
_C.KD.ENABLED = False
# The teacher's full engine_lib config (YAML); its MODEL.DEVICE is replaced by the student's.
_C.KD.MODEL_CONFIG = ""
# The teacher's weights: a checkpoint written by engine_lib (or a state dict), read
# weights_only unless MODEL.WEIGHTS_ALLOW_PICKLE.
_C.KD.MODEL_WEIGHTS = ""
# The teacher is an exponential moving average of the student (a "mean teacher") instead of
# KD.MODEL_CONFIG + KD.MODEL_WEIGHTS, updated after each optimizer step by hooks.EMATeacher.
_C.KD.EMA_TEACHER = False
# EMA teacher update: teacher = m * teacher + (1 - m) * student, with m this value in [0, 1).
_C.KD.EMA_MOMENTUM = 0.999
# Temperature T that softens both models' logits in the distillation loss.
_C.KD.TEMPERATURE = 4.0
# Weight of loss_kd = T^2 * KL(softmax(teacher / T) || softmax(student / T)).
_C.KD.LOSS_WEIGHT = 1.0
# Weight of the student's own (supervised) losses; 0 leaves them out (distillation only).
_C.KD.STUDENT_LOSS_WEIGHT = 1.0

# ---------------------------------------------------------------------------------------
# Extra hooks
# ---------------------------------------------------------------------------------------
# Names in engine_lib.engine.hooks.HOOK_REGISTRY of hooks to add to DefaultTrainer's, in this
# order, after its own and before the metric writers; each entry is built from the config,
# e.g. ("TorchMemoryStats",). See docs/hooks.md.
_C.HOOKS = ()

# ---------------------------------------------------------------------------------------
# Metric writers and experiment trackers (docs/trackers.md)
# ---------------------------------------------------------------------------------------
# Names in engine_lib.engine.writers.WRITER_REGISTRY of the writers of a run (main process):
# "console", "json" (metrics.json), "tensorboard", "mlflow" (pip install -e ".[mlflow]"),
# "wandb" (pip install -e ".[wandb]").
_C.WRITERS = ("console", "json", "tensorboard")
_C.TRACKER = CN()
_C.TRACKER.MLFLOW = CN()
# MLflow tracking URI ("" = the local store file:<OUTPUT_DIR>/mlruns; e.g. "http://host:5000"
# or "sqlite:///mlflow.db" with the full mlflow package).
_C.TRACKER.MLFLOW.TRACKING_URI = ""
# MLflow experiment of the run, created if missing.
_C.TRACKER.MLFLOW.EXPERIMENT_NAME = "engine_lib"
# MLflow run name ("" = MLflow picks one).
_C.TRACKER.MLFLOW.RUN_NAME = ""
_C.TRACKER.WANDB = CN()
# Weights & Biases project.
_C.TRACKER.WANDB.PROJECT = "engine_lib"
# Weights & Biases entity, a user or team ("" = your default).
_C.TRACKER.WANDB.ENTITY = ""
# Weights & Biases run name ("" = W&B picks one).
_C.TRACKER.WANDB.RUN_NAME = ""
# "offline" (written under OUTPUT_DIR/wandb, uploaded with `wandb sync`), "online" or
# "disabled"; "" = the WANDB_MODE environment variable, else "offline".
_C.TRACKER.WANDB.MODE = ""

# ---------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------
# Directory for checkpoints, logs, metrics and the dumped config.
_C.OUTPUT_DIR = "./output"
# Random seed; each rank uses SEED + rank where streams must differ. Negative = random seed
# (logged, so the run can be repeated).
_C.SEED = 0
# Let cuDNN benchmark convolution algorithms (faster for fixed input sizes, not deterministic).
_C.CUDNN_BENCHMARK = False
# Deterministic training: cuDNN deterministic and no benchmark (overrides CUDNN_BENCHMARK),
# torch.use_deterministic_algorithms(True) (an op without a deterministic kernel raises), and
# CUBLAS_WORKSPACE_CONFIG=:4096:8 on CUDA. Same as --deterministic.
_C.DETERMINISTIC = False
