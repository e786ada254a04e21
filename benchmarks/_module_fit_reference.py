"""The reference of benchmarks/train_classification.py: a plain ``mx.mod.Module.fit`` as in
MXNet's example/image-classification, on the same RecordIO data, network and batch size as
the job, with per-epoch checkpoints and validation.  Prints one JSON line of per-epoch
training seconds (validation excluded, measured like the job's metrics.json)."""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "jobs", "image_classification"))

import mxnet as mx  # noqa: E402
import resnet  # noqa: E402  (the same network definition the job uses)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num_layers", type=int, default=20)
    p.add_argument("--image_shape", default="3,64,64")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_epochs", type=int, default=3)
    p.add_argument("--num_classes", type=int, required=True)
    args = p.parse_args()
    shape = tuple(int(x) for x in args.image_shape.split(","))
    common = dict(data_shape=shape, batch_size=args.batch_size, preprocess_threads=os.cpu_count() or 1)
    train = mx.io.ImageRecordIter(path_imgrec=os.path.join(args.data, "train.rec"),
                                  path_imgidx=os.path.join(args.data, "train.idx"),
                                  shuffle=True, rand_crop=True, rand_mirror=True, **common)
    val = mx.io.ImageRecordIter(path_imgrec=os.path.join(args.data, "val.rec"), shuffle=False, **common)
    symbol = resnet.get_symbol(args.num_classes, args.num_layers, shape)
    times, mark = [], [time.time()]

    def epoch_end(*_):
        times.append(time.time() - mark[0])

    def eval_end(_):
        mark[0] = time.time()

    mod = mx.mod.Module(symbol, context=mx.cpu())
    mod.fit(train, eval_data=val, eval_metric="acc", optimizer="sgd", kvstore="local",
            optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4},
            initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
            num_epoch=args.num_epochs, batch_end_callback=[mx.callback.Speedometer(args.batch_size, 20)],
            epoch_end_callback=[mx.callback.do_checkpoint(os.path.join(args.out, "ref")), epoch_end],
            eval_end_callback=eval_end)
    print(json.dumps({"epoch_seconds": times}))


if __name__ == "__main__":
    main()
