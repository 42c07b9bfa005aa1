"""The notebook's constants, with the notebook's values. train.py and predict.py take
their flag defaults from here; the columns and labels are fixed here only."""

# Step 1: where checkpoints and results go.
OUTPUT_DIR = "OUTPUT_Bert"
DO_DELETE = False
USE_BUCKET = False
BUCKET = None

# Step 2: the IMDB Large Movie Review Dataset (aclImdb v1).
DATA_DIR = "data"
DATA_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
DATA_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
TRAIN_SAMPLES = 5000
TEST_SAMPLES = 5000
# The notebook sampled without a seed; a fixed one makes reruns and resumes pick the
# same reviews (see docs/deviations.md).
SEED = 42

DATA_COLUMN = "sentence"
LABEL_COLUMN = "polarity"
label_list = [0, 1]
LABEL_NAMES = ["Negative", "Positive"]

# Step 4: BERT-Base uncased, 12 layers, hidden 768, 12 heads.
BERT_MODEL_HUB = "https://tfhub.dev/google/bert_uncased_L-12_H-768_A-12/1"

# Steps 5 and 8: features and hyper-parameters.
MAX_SEQ_LENGTH = 128
BATCH_SIZE = 32
LEARNING_RATE = 2e-5
NUM_TRAIN_EPOCHS = 3.0
WARMUP_PROPORTION = 0.1
SAVE_CHECKPOINTS_STEPS = 500
# Not in the notebook: also save at least this often, so a crash loses little.
SAVE_CHECKPOINTS_SECS = 600
SAVE_SUMMARY_STEPS = 100

# The classifier head's dropout (keep probability 0.9 in the notebook).
HEAD_DROPOUT_KEEP_PROB = 0.9
# bert's optimizer clips the gradients to this global norm.
CLIP_NORM = 1.0

# predict.py on a machine with an NVIDIA GPU: up to this many sentences, the ONNX copy on
# the CPU (no TensorFlow start-up); more, TensorFlow on the GPU. Not measured on a GPU yet:
# bench/predict_startup.py --file-sentences measures it (docs/predict.md).
ONNX_MAX_SENTENCES_WITH_GPU = 256
