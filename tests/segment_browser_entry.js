// The stock @segment/analytics-next, unmodified, bundled for a test page (tests/test_segment_sdks.py).
import { AnalyticsBrowser } from '@segment/analytics-next'

window.AnalyticsBrowser = AnalyticsBrowser
