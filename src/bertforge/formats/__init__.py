"""Byte-level file formats, read and written without the frameworks that define them: protobuf wire format,
CRC-32C, TFRecord and tf.train.Example, MindSpore `.ckpt`, TensorBoard event files."""
