-- NetAsym: devices with more than 720 network samples in total that send more bytes than they
-- receive, with their descriptors.
SELECT
    a.guid,
    a.nrs,
    a.received_bytes,
    a.sent_bytes,
    b.chassistype,
    b.modelvendor_normalized AS vendor,
    b.model_normalized AS model,
    b.ram,
    b.os,
    b."#ofcores" AS number_of_cores,
    b.processornumber,
    b.cpucode,
    b.cpuname
FROM (
    SELECT
        guid,
        SUM(nrs) AS nrs,
        SUM(CASE WHEN input_desc = 'OS:NETWORK INTERFACE::BYTES RECEIVED/SEC::'
                 THEN avg_bytes_sec * nrs * 5 ELSE 0 END) AS received_bytes,
        SUM(CASE WHEN input_desc = 'OS:NETWORK INTERFACE::BYTES SENT/SEC::'
                 THEN avg_bytes_sec * nrs * 5 ELSE 0 END) AS sent_bytes
    FROM system_network_consumption
    GROUP BY guid
    HAVING SUM(nrs) > 720
) a
INNER JOIN system_sysinfo_unique_normalized b ON a.guid = b.guid
WHERE a.sent_bytes > a.received_bytes
ORDER BY a.guid
