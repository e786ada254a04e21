# -*- coding: utf-8 -*-
# caltech101 image classification on ModelArts (MXNet engine).
# Code folder on OBS: obs://<bucket>/caltech/codes/, boot file: codes/train_caltech.py
import argparse
import json
import logging
import os

import mxnet as mx
import moxing as mox

from codes.symbol.resnet import get_symbol

logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')

parser = argparse.ArgumentParser(description='train caltech101')
parser.add_argument('--data_url', type=str, default='s3://obs-caltech/data/', help='dataset on obs')
parser.add_argument('--train_url', type=str, default='s3://obs-caltech/output/', help='where the model goes')
parser.add_argument('--num_gpus', type=int, default=0)
parser.add_argument('--num_epochs', type=int, default=10)
parser.add_argument('--batch_size', type=int, default=32)
parser.add_argument('--lr', type=float, default=0.1)
parser.add_argument('--image_shape', type=str, default='3,32,32')
parser.add_argument('--num_classes', type=int, default=101)
args, _ = parser.parse_known_args()

# the job runs in the folder that holds the code folder
with open('./codes/network.json') as f:
    filter_list = json.load(f)['filter_list']

# copy the data set to the local disk first, then read it from there
local_data = os.path.join(os.getcwd(), 'cache', 'caltech')
mox.file.copy_parallel(args.data_url, local_data)
logging.info('data copied to %s: %s', local_data, sorted(os.listdir(local_data)))

shape = tuple(int(x) for x in args.image_shape.split(','))
train = mx.io.ImageRecordIter(path_imgrec=os.path.join(local_data, 'train.rec'), data_shape=shape,
                              batch_size=args.batch_size, shuffle=True, rand_mirror=True, resize=shape[1])
val = mx.io.ImageRecordIter(path_imgrec=os.path.join(local_data, 'val.rec'), data_shape=shape,
                            batch_size=args.batch_size, resize=shape[1])

sym = get_symbol(args.num_classes, filter_list, args.image_shape)
devs = [mx.gpu(i) for i in range(args.num_gpus)] if args.num_gpus else mx.cpu()
model = mx.mod.Module(symbol=sym, context=devs)
local_out = os.path.join(os.getcwd(), 'cache', 'output')
if not os.path.exists(local_out):
    os.makedirs(local_out)
model.fit(train, eval_data=val, eval_metric=['acc'], num_epoch=args.num_epochs,
          optimizer='sgd', optimizer_params={'learning_rate': args.lr, 'momentum': 0.9, 'wd': 0.0001},
          initializer=mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
          batch_end_callback=mx.callback.Speedometer(args.batch_size, 2),
          epoch_end_callback=mx.callback.do_checkpoint(os.path.join(local_out, 'resnet')))

# model/ for the import: symbol, the last params and the class names
export = os.path.join(local_out, 'model')
os.makedirs(export)
sym.save(os.path.join(export, 'resnet-symbol.json'))
mox.file.copy(os.path.join(local_out, 'resnet-%04d.params' % args.num_epochs),
              os.path.join(export, 'resnet-0000.params'))
mox.file.copy(os.path.join(local_data, 'labels.txt'), os.path.join(export, 'labels.txt'))
mox.file.copy_parallel(local_out, args.train_url)
print('training done, model exported to ' + args.train_url)
