from desra_jax.metrics.detection import evaluate_detection, iou, mean_iou, removal_addition_rates
