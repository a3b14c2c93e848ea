//! Run-log analysis, specialisation plots and reports.
