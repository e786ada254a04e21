# -*- coding: utf-8 -*-
"""A training script written the way ModelArts' MXNet tutorials write them, NOT for this
project: it must run unmodified on the local backend (tests/test_modelarts_code.py).

It takes ModelArts' arguments, copies its data with moxing, trains a small CNN with
Module.fit on RecordIO, writes checkpoints straight to train_url, and builds the model
package (model/ with customize_service.py and config.json) itself with moxing.
"""
import argparse
import logging
import os

import moxing.mxnet as mox
import mxnet as mx

logging.basicConfig(level=logging.INFO)

parser = argparse.ArgumentParser(description="caltech101 classification")
parser.add_argument('--data_url', type=str, required=True, help='the training data')
parser.add_argument('--train_url', type=str, required=True, help='the path model saved')
parser.add_argument('--num_gpus', type=int, default=0, help='number of gpus')
parser.add_argument('--num_epochs', type=int, default=4)
parser.add_argument('--batch_size', type=int, default=8)
parser.add_argument('--lr', type=float, default=0.05)
parser.add_argument('--image_size', type=int, default=32)
parser.add_argument('--num_classes', type=int, default=3)
args, unknown = parser.parse_known_args()

# ModelArts tutorials copy the data next to the job first (their /cache); moxing reads OBS.
local_data = os.path.join(os.getcwd(), 'cache', 'data')
mox.file.copy_parallel(args.data_url, local_data)
labels = mox.file.read(os.path.join(args.data_url, 'labels.txt')).split()
assert len(labels) == args.num_classes, labels

shape = (3, args.image_size, args.image_size)
train_iter = mx.io.ImageRecordIter(path_imgrec=os.path.join(local_data, 'train.rec'), data_shape=shape,
                                   batch_size=args.batch_size, shuffle=True, rand_mirror=True, resize=args.image_size)
val_iter = mx.io.ImageRecordIter(path_imgrec=os.path.join(local_data, 'val.rec'), data_shape=shape,
                                 batch_size=args.batch_size, resize=args.image_size)

data = mx.sym.Variable('data')
net = mx.sym.Convolution(data=data / 255.0, kernel=(3, 3), num_filter=16, pad=(1, 1), name='conv1')
net = mx.sym.Activation(mx.sym.BatchNorm(net, name='bn1'), act_type='relu')
net = mx.sym.Pooling(net, kernel=(2, 2), stride=(2, 2), pool_type='max')
net = mx.sym.Convolution(net, kernel=(3, 3), num_filter=32, pad=(1, 1), name='conv2')
net = mx.sym.Activation(mx.sym.BatchNorm(net, name='bn2'), act_type='relu')
net = mx.sym.Pooling(net, global_pool=True, kernel=(1, 1), pool_type='avg')
net = mx.sym.FullyConnected(mx.sym.Flatten(net), num_hidden=args.num_classes, name='fc')
net = mx.sym.SoftmaxOutput(net, name='softmax')

ctx = [mx.gpu(i) for i in range(args.num_gpus)] if args.num_gpus > 0 else [mx.cpu()]
prefix = os.path.join(args.train_url, 'caltech')     # checkpoints go straight to train_url
mod = mx.mod.Module(net, context=ctx)
mod.fit(train_iter, eval_data=val_iter, optimizer='sgd',
        optimizer_params={'learning_rate': args.lr, 'momentum': 0.9, 'wd': 1e-4},
        initializer=mx.init.Xavier(), eval_metric='acc', num_epoch=args.num_epochs,
        batch_end_callback=mx.callback.Speedometer(args.batch_size, 5),
        epoch_end_callback=mx.callback.do_checkpoint(prefix))

# The model package, as the tutorial builds it: model/ = symbol, params, labels, service code.
model_dir = os.path.join(args.train_url, 'model')
mox.file.make_dirs(model_dir)
for name in ('caltech-symbol.json', 'caltech-%04d.params' % args.num_epochs):
    mox.file.copy(os.path.join(args.train_url, name), os.path.join(model_dir, name))
mox.file.write(os.path.join(model_dir, 'labels.txt'), '\n'.join(labels) + '\n')
code_dir = os.path.dirname(os.path.abspath(__file__))
for name in ('customize_service.py', 'config.json'):
    mox.file.copy(os.path.join(code_dir, 'infer', name), os.path.join(model_dir, name))
print('model saved to %s' % model_dir)
