-- BrowserHist: per browser, % of browsing devices, % of usage rows and % of browsing duration.
SELECT
    a.browser,
    ROUND(a.num_systems * 100.0 / b.total_systems, 2) AS percent_systems,
    ROUND(a.num_instances * 100.0 / b.tot_instances, 2) AS percent_instances,
    ROUND(a.sum_duration * 100.0 / b.tot_duration, 2) AS percent_duration
FROM (
    SELECT browser, COUNT(DISTINCT guid) AS num_systems, COUNT(*) AS num_instances,
           SUM(duration_ms) AS sum_duration
    FROM system_web_cat_usage
    GROUP BY browser
) a
CROSS JOIN (
    SELECT COUNT(DISTINCT guid) AS total_systems, COUNT(*) AS tot_instances, SUM(duration_ms) AS tot_duration
    FROM system_web_cat_usage
) b
ORDER BY a.browser
