-- BrowserRank: per country, the browser(s) seen on the most devices (ties kept).
SELECT country, browser
FROM (
    SELECT
        a.countryname_normalized AS country,
        b.browser,
        RANK() OVER (PARTITION BY a.countryname_normalized ORDER BY COUNT(DISTINCT b.guid) DESC) AS rnk
    FROM system_sysinfo_unique_normalized a
    INNER JOIN system_web_cat_usage b ON a.guid = b.guid
    GROUP BY a.countryname_normalized, b.browser
)
WHERE rnk = 1
ORDER BY country, browser
