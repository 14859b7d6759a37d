"""Training: typed run config, task adapters, the fit loop, callbacks, distribution.

Import the submodules directly (``keras_pose.train.loop``, ``keras_pose.train.config``);
``config`` imports without TensorFlow, the others need it.
"""
