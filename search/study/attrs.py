"""The names under which a study and its trials keep their user attributes.

They are stored in databases that outlive any version of this code: never change a value.
A module of names only, so that the commands that only read a study (``report``,
``studies``) import them without Optuna's storage.
"""


#: study: a random id drawn when the study is created; its files lie in a folder of that
#: name, so a new study under an old name (its storage moved away) never meets old files
ATTR_STUDY_UID = "study_uid"
#: study: the dataset's config hash and folder (a study runs on one dataset)
ATTR_DATASET_HASH = "dataset_hash"
ATTR_DATASET_PATH = "dataset_path"
#: study: what the dataset is, for `report` over several studies: {cell, simulations, duration_ms,
#: n_inputs, mean_rate_hz, neuron_core_s}
ATTR_DATASET_SUMMARY = "dataset_summary"
#: study: what passing means, and the families searched (so `report` needs no config)
ATTR_TARGET_METRIC = "target_metric"
ATTR_TARGET_THRESHOLD = "target_threshold"
ATTR_FAMILIES = "families"
#: study: the enqueued plan's signature and the number of planned trials
ATTR_PLAN = "plan"
ATTR_PLANNED_TRIALS = "planned_trials"
#: study: the MLflow study run; trial: the MLflow run of this attempt
ATTR_MLFLOW_RUN_ID = "mlflow_run_id"
#: study: the winner in the model registry ({name, version, trial})
ATTR_REGISTERED_MODEL = "registered_model"
#: trial: who trained it ("host:pid"), on which device, for how long
ATTR_WORKER = "worker"
ATTR_DEVICE = "device"
ATTR_TRAIN_SECONDS = "train_seconds"
#: trial: the sampled architecture, its size and the depth its family states for it
ATTR_SPEC = "spec"
ATTR_N_PARAMS = "n_params"
ATTR_REPORTED_DEPTH = "reported_depth"
#: trial: epochs taken over from a dead attempt's checkpoint
ATTR_RESUMED_EPOCHS = "resumed_epochs"
#: trial: the best validation epoch and its metrics
ATTR_BEST_EPOCH = "best_epoch"
ATTR_VAL_METRICS = "val_metrics"
#: trial: why it was skipped (a shallower depth passed, or its depth was settled), pruned or failed
ATTR_SKIP_REASON = "skip_reason"
ATTR_PRUNE_REASON = "prune_reason"
ATTR_FAIL_REASON = "fail_reason"
#: study: prefix of "confirmation:<family>:<depth>", a depth's candidate scored on
#: validation and test with 95% intervals, and whether it passes (search/answer/confirm.py)
ATTR_CONFIRMATION = "confirmation"
#: study: prefix of "learning_curve:<family>:<depth>", its fitted learning curve
ATTR_LEARNING_CURVE = "learning_curve"
#: study: prefix of "settled:<family>:<depth>", a depth's candidate on validation and whether
#: that settles the depth's answer before its planned trials are spent (search/answer/settle.py)
ATTR_SETTLED = "settled"
#: trial system attribute written by Optuna's ``enqueue_trial``: the slot's fixed params
OPTUNA_FIXED_PARAMS = "fixed_params"
