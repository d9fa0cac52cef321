//! Online forecasters (placeholder: filled by the forecasting issue).
