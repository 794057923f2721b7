"""Convert SAM-Med2D's data layout (SA-Med2D-16M release or data_demo) to class maps + datalist.json.

Source: DIR/images/, DIR/masks/, DIR/SAMed2D_v1.json or DIR/image2label_train.json ({image: [masks]}),
optional DIR/label2image_test.json ({mask: image}) and DIR/SAMed2D_v1_class_mapping_id.json.
Usage: python scripts/prepare_sa_med2d.py --src DIR --out DIR [--val 0.1] [--test 0.0] [--seed 0]
"""

import argparse
import json

from monaiseg.data.sa_med2d import prepare_sa_med2d


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="SAM-Med2D data folder (e.g. SAMed2Dv1 or data_demo)")
    parser.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--val", type=float, default=0.1, help="fraction of the training map for validation")
    parser.add_argument(
        "--test",
        type=float,
        default=0.0,
        help="fraction of the training map for testing (when there is no label2image_test.json)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    splits = {"training": 1.0 - args.val - args.test, "validation": args.val}
    if args.test:
        splits["testing"] = args.test
    try:
        datalist = prepare_sa_med2d(args.src, args.out, splits=splits, seed=args.seed)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    content = json.loads(datalist.read_text())
    for split in ("training", "validation", "testing"):
        print(f"{split}: {len(content.get(split, []))} images")
    print(f"classes: {len(content['labels'])}")
    print(datalist)


if __name__ == "__main__":
    main()
