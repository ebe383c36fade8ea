"""Mobile exports of the malware model (ExecuTorch, TFLite/LiteRT, ONNX), their parity checks,
the benchmark harness and the device-farm profiles. Pure logic: no Dagster imports here."""
