"""Per-customer measures: order features, payment behaviour, satisfaction, industry, historical CLV."""
