"""Person re-identification (reid-strong-baseline): Market-1501 data, ResNet + BNNeck, mAP/CMC."""
