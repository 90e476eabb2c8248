"""Echo LVEF: video EF networks, LV area curves, ED/ES detection, per-beat EF and single-study prediction."""
