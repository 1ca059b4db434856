"""A real classifier's predictions for the evaluation report's example.

Fits scikit-learn's multinomial logistic regression on half of its handwritten digits
(1797 images of 8x8 pixels, 10 classes) and writes the other half's logits (the
decision function, whose softmax is predict_proba) and labels as .npy, then what
scikit-learn itself says about them, for comparison with `xent ce`:

    python3 docs/digits/predict.py /tmp/digits
    xent ce --logits /tmp/digits/logits.npy --labels /tmp/digits/labels.npy \
        --top-k 1,2,5 --bins 10 --plot docs/digits/reliability.svg --json
"""

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (balanced_accuracy_score, brier_score_loss, log_loss,
                             top_k_accuracy_score)
from sklearn.model_selection import train_test_split

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
out.mkdir(parents=True, exist_ok=True)
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.5, random_state=0, stratify=y)
# weak regularisation: confident, and so a little over-confident, as such models are
model = LogisticRegression(C=10.0, max_iter=5000).fit(x_train, y_train)
logits = model.decision_function(x_test).astype(np.float32)
np.save(out / "logits.npy", logits)
np.save(out / "labels.npy", y_test.astype(np.int64))
p = model.predict_proba(x_test)
print(json.dumps({
    "log_loss": log_loss(y_test, p),
    "top1": top_k_accuracy_score(y_test, p, k=1),
    "top2": top_k_accuracy_score(y_test, p, k=2),
    "top5": top_k_accuracy_score(y_test, p, k=5),
    "balanced_accuracy": balanced_accuracy_score(y_test, p.argmax(1)),
    "brier": brier_score_loss(y_test, p, labels=list(range(10))),
}))
