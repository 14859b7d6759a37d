"""Export: TFLite conversion (fp32, fp16, dynamic range, int8), QAT, sidecar and validation.

Import the submodules directly (``keras_pose.export.convert``, ``keras_pose.export.qat``);
they import TensorFlow (and tfmot for QAT) only inside the functions that need it.
"""
