-- PersonaPivot: per persona, browsing devices, browsing days (pivot rows), and the day-weighted mean
-- over devices of each category's % of the device's browsing time.
SELECT
    persona,
    COUNT(DISTINCT guid) AS number_of_systems,
    SUM(days) AS days,
    ROUND(100 * SUM(days * content_creation_photo_edit_creation / total_duration) / SUM(days), 3) AS content_creation_photo_edit_creation,
    ROUND(100 * SUM(days * content_creation_video_audio_edit_creation / total_duration) / SUM(days), 3) AS content_creation_video_audio_edit_creation,
    ROUND(100 * SUM(days * content_creation_web_design_development / total_duration) / SUM(days), 3) AS content_creation_web_design_development,
    ROUND(100 * SUM(days * education / total_duration) / SUM(days), 3) AS education,
    ROUND(100 * SUM(days * entertainment_music_audio_streaming / total_duration) / SUM(days), 3) AS entertainment_music_audio_streaming,
    ROUND(100 * SUM(days * entertainment_other / total_duration) / SUM(days), 3) AS entertainment_other,
    ROUND(100 * SUM(days * entertainment_video_streaming / total_duration) / SUM(days), 3) AS entertainment_video_streaming,
    ROUND(100 * SUM(days * finance / total_duration) / SUM(days), 3) AS finance,
    ROUND(100 * SUM(days * games_other / total_duration) / SUM(days), 3) AS games_other,
    ROUND(100 * SUM(days * games_video_games / total_duration) / SUM(days), 3) AS games_video_games,
    ROUND(100 * SUM(days * mail / total_duration) / SUM(days), 3) AS mail,
    ROUND(100 * SUM(days * news / total_duration) / SUM(days), 3) AS news,
    ROUND(100 * SUM(days * unclassified / total_duration) / SUM(days), 3) AS unclassified,
    ROUND(100 * SUM(days * private / total_duration) / SUM(days), 3) AS private,
    ROUND(100 * SUM(days * productivity_crm / total_duration) / SUM(days), 3) AS productivity_crm,
    ROUND(100 * SUM(days * productivity_other / total_duration) / SUM(days), 3) AS productivity_other,
    ROUND(100 * SUM(days * productivity_presentations / total_duration) / SUM(days), 3) AS productivity_presentations,
    ROUND(100 * SUM(days * productivity_programming / total_duration) / SUM(days), 3) AS productivity_programming,
    ROUND(100 * SUM(days * productivity_project_management / total_duration) / SUM(days), 3) AS productivity_project_management,
    ROUND(100 * SUM(days * productivity_spreadsheets / total_duration) / SUM(days), 3) AS productivity_spreadsheets,
    ROUND(100 * SUM(days * productivity_word_processing / total_duration) / SUM(days), 3) AS productivity_word_processing,
    ROUND(100 * SUM(days * recreation_travel / total_duration) / SUM(days), 3) AS recreation_travel,
    ROUND(100 * SUM(days * reference / total_duration) / SUM(days), 3) AS reference,
    ROUND(100 * SUM(days * search / total_duration) / SUM(days), 3) AS search,
    ROUND(100 * SUM(days * shopping / total_duration) / SUM(days), 3) AS shopping,
    ROUND(100 * SUM(days * social_social_network / total_duration) / SUM(days), 3) AS social_social_network,
    ROUND(100 * SUM(days * social_communication / total_duration) / SUM(days), 3) AS social_communication,
    ROUND(100 * SUM(days * social_communication_live / total_duration) / SUM(days), 3) AS social_communication_live
FROM (
    SELECT
        a.guid,
        a.persona,
        COUNT(*) AS days,
        SUM(b.content_creation_photo_edit_creation) AS content_creation_photo_edit_creation,
        SUM(b.content_creation_video_audio_edit_creation) AS content_creation_video_audio_edit_creation,
        SUM(b.content_creation_web_design_development) AS content_creation_web_design_development,
        SUM(b.education) AS education,
        SUM(b.entertainment_music_audio_streaming) AS entertainment_music_audio_streaming,
        SUM(b.entertainment_other) AS entertainment_other,
        SUM(b.entertainment_video_streaming) AS entertainment_video_streaming,
        SUM(b.finance) AS finance,
        SUM(b.games_other) AS games_other,
        SUM(b.games_video_games) AS games_video_games,
        SUM(b.mail) AS mail,
        SUM(b.news) AS news,
        SUM(b.unclassified) AS unclassified,
        SUM(b.private) AS private,
        SUM(b.productivity_crm) AS productivity_crm,
        SUM(b.productivity_other) AS productivity_other,
        SUM(b.productivity_presentations) AS productivity_presentations,
        SUM(b.productivity_programming) AS productivity_programming,
        SUM(b.productivity_project_management) AS productivity_project_management,
        SUM(b.productivity_spreadsheets) AS productivity_spreadsheets,
        SUM(b.productivity_word_processing) AS productivity_word_processing,
        SUM(b.recreation_travel) AS recreation_travel,
        SUM(b.reference) AS reference,
        SUM(b.search) AS search,
        SUM(b.shopping) AS shopping,
        SUM(b.social_social_network) AS social_social_network,
        SUM(b.social_communication) AS social_communication,
        SUM(b.social_communication_live) AS social_communication_live,
        SUM(
            b.content_creation_photo_edit_creation +
            b.content_creation_video_audio_edit_creation +
            b.content_creation_web_design_development +
            b.education +
            b.entertainment_music_audio_streaming +
            b.entertainment_other +
            b.entertainment_video_streaming +
            b.finance +
            b.games_other +
            b.games_video_games +
            b.mail +
            b.news +
            b.unclassified +
            b.private +
            b.productivity_crm +
            b.productivity_other +
            b.productivity_presentations +
            b.productivity_programming +
            b.productivity_project_management +
            b.productivity_spreadsheets +
            b.productivity_word_processing +
            b.recreation_travel +
            b.reference +
            b.search +
            b.shopping +
            b.social_social_network +
            b.social_communication +
            b.social_communication_live
        ) AS total_duration
    FROM system_sysinfo_unique_normalized a
    INNER JOIN system_web_cat_pivot_duration b ON a.guid = b.guid
    GROUP BY a.guid, a.persona
) inn
GROUP BY persona
ORDER BY persona
