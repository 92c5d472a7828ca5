"""OpenVINO IR networks: the graph as data (:mod:`.graph`) and its PyTorch interpreter (:mod:`.program`)."""
