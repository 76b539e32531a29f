import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Put, Query } from '@nestjs/common';
import {
  AccessControlRpc,
  CreateGroupBodySchema,
  GroupSchema,
  IdParamSchema,
  MembershipSchema,
  PageQuerySchema,
  pageSchema,
  PutMemberBodySchema,
  UpdateGroupBodySchema,
  toPageRequest,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';
import { GroupMemberParamsSchema } from '../http/params';

@Controller('api/v1/groups')
export class GroupsController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a group (admin)',
    tags: ['groups'],
    body: CreateGroupBodySchema,
    status: 201,
    response: GroupSchema,
    errors: ['CONFLICT'],
    admin: true,
  })
  create(@Caller() actor: Principal, @Body() body: unknown) {
    return this.rpc.call(AccessControlRpc.createGroup, { actor, ...parse(CreateGroupBodySchema, body, 'body') });
  }

  @Get()
  @ApiRoute({
    summary: 'List groups (admin)',
    tags: ['groups'],
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(GroupSchema),
    admin: true,
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @Query() query: unknown) {
    return this.rpc.call(AccessControlRpc.listGroups, {
      actor,
      page: toPageRequest(parse(PageQuerySchema, query, 'query')),
    });
  }

  @Patch(':id')
  @ApiRoute({
    summary: 'Rename a group or change its remark (admin)',
    tags: ['groups'],
    params: IdParamSchema,
    body: UpdateGroupBodySchema,
    status: 200,
    response: GroupSchema,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  update(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessControlRpc.updateGroup, {
      actor,
      id,
      patch: parse(UpdateGroupBodySchema, body, 'body'),
    });
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Delete a group (admin); the default group cannot be deleted (409)',
    tags: ['groups'],
    params: IdParamSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND', 'CONFLICT'],
    admin: true,
  })
  async remove(@Caller() actor: Principal, @Param() params: unknown) {
    await this.rpc.call(AccessControlRpc.deleteGroup, { actor, ...parse(IdParamSchema, params, 'path') });
  }

  @Get(':id/members')
  @ApiRoute({
    summary: "List a group's members (admins and the group's admins)",
    tags: ['groups'],
    params: IdParamSchema,
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(MembershipSchema),
    errors: ['FORBIDDEN', 'NOT_FOUND', 'INVALID_CURSOR'],
  })
  members(@Caller() actor: Principal, @Param() params: unknown, @Query() query: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessControlRpc.listMembers, {
      actor,
      id,
      page: toPageRequest(parse(PageQuerySchema, query, 'query')),
    });
  }

  @Put(':id/members/:user_id')
  @ApiRoute({
    summary: "Add a member or change their group-admin flag (admins and the group's admins)",
    tags: ['groups'],
    params: GroupMemberParamsSchema,
    body: PutMemberBodySchema,
    status: 200,
    response: MembershipSchema,
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  })
  putMember(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id, user_id } = parse(GroupMemberParamsSchema, params, 'path');
    const { is_group_admin } = parse(PutMemberBodySchema, body ?? {}, 'body');
    return this.rpc.call(AccessControlRpc.putMember, { actor, id, user_id, is_group_admin });
  }

  @Delete(':id/members/:user_id')
  @HttpCode(204)
  @ApiRoute({
    summary: "Remove a member (admins and the group's admins)",
    tags: ['groups'],
    params: GroupMemberParamsSchema,
    status: 204,
    response: null,
    errors: ['FORBIDDEN', 'NOT_FOUND'],
  })
  async removeMember(@Caller() actor: Principal, @Param() params: unknown) {
    await this.rpc.call(AccessControlRpc.deleteMember, { actor, ...parse(GroupMemberParamsSchema, params, 'path') });
  }
}
