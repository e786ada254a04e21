# -*- coding: utf-8 -*-
# Flowers classification on ModelArts with the MXNet engine. The data folder holds the
# RecordIO files made by MXNet's tools/im2rec.py (flowers_train.rec/.idx, flowers_val.rec/.idx).
import argparse
import logging
import os

import mxnet as mx
import moxing.mxnet as mox

logging.basicConfig(level=logging.DEBUG)


def get_lenet(num_classes):
    data = mx.symbol.Variable('data')
    conv1 = mx.symbol.Convolution(data=data, kernel=(5, 5), num_filter=10)
    tanh1 = mx.symbol.Activation(data=conv1, act_type="tanh")
    pool1 = mx.symbol.Pooling(data=tanh1, pool_type="max", kernel=(2, 2), stride=(2, 2))
    conv2 = mx.symbol.Convolution(data=pool1, kernel=(5, 5), num_filter=20)
    tanh2 = mx.symbol.Activation(data=conv2, act_type="tanh")
    pool2 = mx.symbol.Pooling(data=tanh2, pool_type="max", kernel=(2, 2), stride=(2, 2))
    flatten = mx.symbol.Flatten(data=pool2)
    fc1 = mx.symbol.FullyConnected(data=flatten, num_hidden=50)
    tanh3 = mx.symbol.Activation(data=fc1, act_type="tanh")
    fc2 = mx.symbol.FullyConnected(data=tanh3, num_hidden=num_classes)
    return mx.symbol.SoftmaxOutput(data=fc2, name='softmax')


def main():
    parser = argparse.ArgumentParser(description="train flowers",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--data_url', type=str, help='the training data')
    parser.add_argument('--train_url', type=str, help='the path model saved')
    parser.add_argument('--num_gpus', type=int, default=0, help='number of gpus')
    parser.add_argument('--num_epoch', type=int, default=5, help='max num of epochs')
    parser.add_argument('--batch_size', type=int, default=16, help='the batch size')
    parser.add_argument('--lr', type=float, default=0.05, help='initial learning rate')
    parser.add_argument('--num_classes', type=int, default=5, help='the number of classes')
    parser.add_argument('--export_model', type=int, default=1, help='1: export model for predict job')
    args, unkown = parser.parse_known_args()

    train_dataiter = mx.io.ImageRecordIter(
        path_imgrec=os.path.join(args.data_url, 'flowers_train.rec'),
        path_imgidx=os.path.join(args.data_url, 'flowers_train.idx'),
        data_shape=(3, 28, 28), batch_size=args.batch_size, shuffle=True, resize=28)
    val_dataiter = mx.io.ImageRecordIter(
        path_imgrec=os.path.join(args.data_url, 'flowers_val.rec'),
        data_shape=(3, 28, 28), batch_size=args.batch_size, resize=28)

    context = [mx.gpu(i) for i in range(args.num_gpus)] if args.num_gpus > 0 else [mx.cpu()]
    model = mx.mod.Module(context=context, symbol=get_lenet(args.num_classes))
    checkpoint = mx.callback.do_checkpoint(os.path.join(args.train_url, 'flowers'))
    model.fit(train_dataiter, eval_data=val_dataiter, optimizer='sgd',
              optimizer_params={'learning_rate': args.lr, 'momentum': 0.9},
              initializer=mx.init.Xavier(), eval_metric='acc', num_epoch=args.num_epoch,
              batch_end_callback=mx.callback.Speedometer(args.batch_size, 1),
              epoch_end_callback=checkpoint)

    if args.export_model:
        model_path = os.path.join(args.train_url, 'model')
        mox.file.make_dirs(model_path)
        mox.file.copy(os.path.join(args.train_url, 'flowers-symbol.json'),
                      os.path.join(model_path, 'flowers-symbol.json'))
        mox.file.copy(os.path.join(args.train_url, 'flowers-%04d.params' % args.num_epoch),
                      os.path.join(model_path, 'flowers-0000.params'))
        infer_dir = os.path.join(os.path.dirname(os.path.realpath(__file__)), 'infer')
        for name in os.listdir(infer_dir):
            mox.file.copy(os.path.join(infer_dir, name), os.path.join(model_path, name))


if __name__ == '__main__':
    main()
