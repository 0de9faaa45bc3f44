"""A COCO keypoints dataset whose keypoint set is not COCO's 17, for the pose tests: the embedded
generator's people relabelled as five custom-named landmarks with a skeleton of their own.

    root = write_landmark_dataset(tmp_path / "landmarks")   # annotations/ and images/, as a user has them
    config evaluate.sigmas = SIGMAS                          # one OKS constant per landmark
"""
import json
from pathlib import Path

from pipeline_lib.tasks.pose.synthetic import KEYPOINTS, generate_coco_keypoints

# landmark name -> the generator's keypoint it sits on; left_/right_ names make the flip pairs
LANDMARKS = {"face": "nose", "left_hand": "left_wrist", "right_hand": "right_wrist",
             "left_foot": "left_ankle", "right_foot": "right_ankle"}
SKELETON = [[1, 2], [1, 3], [1, 4], [1, 5]]  # 1-based, as COCO writes it
SIGMAS = [0.026, 0.062, 0.062, 0.089, 0.089]
FLIP_PAIRS = [[1, 2], [3, 4]]


def write_landmark_dataset(root: Path, n_train: int = 8, n_val: int = 4, imgsz: int = 64, seed: int = 0) -> Path:
    root = generate_coco_keypoints(root, n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed, difficulty=0.2)
    columns = [KEYPOINTS.index(name) for name in LANDMARKS.values()]
    for split in ("train", "val"):
        path = root / "annotations" / f"person_keypoints_{split}.json"
        coco = json.loads(path.read_text())
        coco["categories"] = [{"id": 1, "name": "figure", "supercategory": "figure",
                               "keypoints": list(LANDMARKS), "skeleton": SKELETON}]
        for ann in coco["annotations"]:
            triplets = [ann["keypoints"][3 * j: 3 * j + 3] for j in columns]
            ann["keypoints"] = [v for triplet in triplets for v in triplet]
            ann["num_keypoints"] = sum(v > 0 for _, _, v in triplets)
        path.write_text(json.dumps(coco))
    (root / ".complete").unlink(missing_ok=True)  # the generator's marker: this folder is the user's now
    return root
