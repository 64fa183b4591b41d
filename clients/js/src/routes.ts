/**
 * Types of the `/im` routes an app calls most, for `GatewayClient.call`: the request body and the
 * envelope's `data`, as OpenIM v3.8.3 answers them (fields it may add are allowed). Any other
 * route of the gateway's route table is called as `call<T>("/im/...", body)`.
 */

export interface UserInfo {
  userID: string;
  nickname: string;
  faceURL: string;
  ex: string;
  createTime: number;
  appMangerLevel: number;
  globalRecvMsgOpt: number;
}

export interface ConversationMessageInfo {
  serverMsgID: string;
  clientMsgID: string;
  sessionType: number;
  sendID: string;
  recvID: string;
  senderName: string;
  faceURL: string;
  groupID: string;
  groupName: string;
  contentType: number;
  content: string;
  LatestMsgRecvTime: number;
}

export interface ConversationElem {
  conversationID: string;
  recvMsgOpt: number;
  unreadCount: number;
  IsPinned: boolean;
  msgInfo: ConversationMessageInfo | null;
}

export interface ImRoutes {
  /** Answered by the gateway itself, from `/user/get_users_info` for the caller. */
  "/im/user/get_self_user_info": { request: Record<string, never>; response: UserInfo };
  "/im/user/get_users_info": { request: { userIDs: string[] }; response: { usersInfo: UserInfo[] | null } };
  "/im/msg/get_server_time": { request: Record<string, never>; response: { serverTime: number } };
  "/im/conversation/get_sorted_conversation_list": {
    /** `userID` is the caller's, filled in by the gateway when absent. */
    request: { userID?: string; conversationIDs?: string[]; pagination?: { pageNumber: number; showNumber: number } };
    response: { conversationTotal: number; unreadTotal: number; conversationElems: ConversationElem[] | null };
  };
}
