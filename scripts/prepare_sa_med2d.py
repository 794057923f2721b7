"""Convert SAM-Med2D's data layout (SA-Med2D-16M release or data_demo) to class maps + datalist.json.

Source: DIR/images/, DIR/masks/, DIR/SAMed2D_v1.json or DIR/image2label_train.json ({image: [masks]}),
optional DIR/label2image_test.json ({mask: image}) and DIR/SAMed2D_v1_class_mapping_id.json.
Usage: python scripts/prepare_sa_med2d.py --src DIR --out DIR [--val 0.1] [--test 0.0] [--seed 0]
"""

from monaiseg.data.sa_med2d import main

if __name__ == "__main__":
    main()
